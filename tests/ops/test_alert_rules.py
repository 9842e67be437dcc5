"""The operations kit in contrib/: Prometheus rules (checked and unit-tested by promtool), the scrape config, the
compose file, the Grafana dashboard and the runbook links they share."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
ALERTS = CONTRIB / "prometheus" / "alerts.yml"
ALERT_TESTS = CONTRIB / "prometheus" / "alerts_test.yml"
COMPOSE = CONTRIB.parent / "docker-compose.yml"  # at the root, where the runbook's docker-compose finds it
DASHBOARD = CONTRIB / "grafana" / "libervia-dashboard.json"
IN_CI = os.environ.get("CI", "").lower() == "true"

# API.md section 5: the families /internal/metrics always exposes.
HISTOGRAM = "libervia_http_request_duration_ms"
METRICS = {
    "libervia_http_requests_total", HISTOGRAM, "libervia_http_errors_total", "libervia_auth_failures_total",
    "libervia_tenant_conflicts_total", "libervia_rate_limited_total", "libervia_tenants",
    "libervia_active_instances", "libervia_eventlog_appends_total", "libervia_process_uptime_seconds",
}
SERIES_NAMES = METRICS | {f"{HISTOGRAM}_{suffix}" for suffix in ("bucket", "sum", "count")}
ALERT_PROCEDURES = {
    "API_DOWN": "PROC-001", "HIGH_LATENCY": "PROC-002", "ERROR_RATE_SPIKE": "PROC-003",
    "AUTH_FAILURE_SPIKE": "PROC-004", "TENANT_CONFLICT_SPIKE": "PROC-005", "RATE_LIMIT_ABUSE": "PROC-006",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is required under CI=true: apt-get install -y prometheus")
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\blibervia_[a-z0-9_]+", expr))


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def runbook_anchors(path: Path) -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', path.read_text()))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


# --- Prometheus rules --------------------------------------------------------------------------------------------

def test_promtool_accepts_the_alert_rules():
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_promtool_unit_tests_fire_and_silence_every_alert():
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    assert fired == set(ALERT_PROCEDURES)
    assert silent == set(ALERT_PROCEDURES)


def test_alerts_name_their_procedure_and_link_an_existing_runbook_anchor():
    rules = alert_rules()
    assert set(rules) == set(ALERT_PROCEDURES)
    anchors = runbook_anchors(ROOT / "docs" / "RUNBOOK.md")
    assert anchors == runbook_anchors(ROOT / "docs" / "RUNBOOK.en.md")
    for name, procedure in ALERT_PROCEDURES.items():
        annotations = rules[name]["annotations"]
        assert annotations["procedure"] == procedure
        assert annotations["runbook_url"] == f"docs/RUNBOOK.md#{procedure.lower()}"
        assert procedure.lower() in anchors
        assert rules[name]["labels"]["severity"] in {"critical", "warning"}
        assert metric_names(rules[name]["expr"]) <= SERIES_NAMES


def test_alert_thresholds_follow_the_runbook():
    rules = alert_rules()
    assert re.search(r"histogram_quantile\(0\.95,.*\)\s*>\s*1000\s*$", rules["HIGH_LATENCY"]["expr"].strip(), re.S)
    assert re.search(r'status=~"5\.\."', rules["ERROR_RATE_SPIKE"]["expr"])
    assert re.search(r">\s*0\.01\s*$", rules["ERROR_RATE_SPIKE"]["expr"].strip())


def test_scrape_config_is_valid_and_authenticates_with_a_token_file(tmp_path: Path):
    config = yaml.safe_load((CONTRIB / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "libervia-gateway")
    assert job["metrics_path"] == "/internal/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert "credentials" not in job["authorization"], "the token belongs in a file, not in the config"
    assert job["static_configs"][0]["targets"] == ["libervia-gateway:3000"]

    # The token file is the secret compose mounts into the Prometheus container.
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    mounted = {f"/run/secrets/{secret['target']}" for secret in prometheus["secrets"]}
    assert job["authorization"]["credentials_file"] in mounted

    # Paths are the container's; point them at local files for promtool, which opens both.
    config["rule_files"] = [str(ALERTS)]
    token = tmp_path / "admin_token"
    token.write_text("x" * 32)
    job["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker compose ----------------------------------------------------------------------------------------------

def test_compose_file_runs_the_gateway_with_its_volume_env_file_and_profiles():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    gateway = services["gateway"]  # the runbook: docker-compose restart gateway; docker logs libervia-gateway
    assert gateway["container_name"] == "libervia-gateway"
    assert gateway["build"] == {"context": ".", "dockerfile": "contrib/Dockerfile"}
    assert (COMPOSE.parent / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    assert "profiles" not in gateway, "the gateway must start without naming a profile"
    assert any(str(port).endswith(":3000") for port in gateway["ports"])
    assert gateway["env_file"] == ["contrib/libervia.env"]
    assert (CONTRIB / "libervia.env.example").is_file()
    assert gateway["stop_grace_period"] == "35s"
    assert any("/health" in part for part in gateway["healthcheck"]["test"])

    volume, target = next(v.split(":")[:2] for v in gateway["volumes"] if v.split(":")[1] == "/data/libervia")
    assert volume in compose["volumes"], "BASE_DIR must live on a named volume"
    assert gateway["environment"]["BASE_DIR"] == target

    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles["prometheus"] == ["monitoring"]
    assert profiles["grafana"] == ["monitoring"]
    assert profiles["postgres"] == ["postgres"]
    assert profiles["redis"] == ["redis"]


def test_compose_mounts_files_that_exist():
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"


def test_env_example_sets_every_required_variable():
    names = {line.split("=", 1)[0] for line in (CONTRIB / "libervia.env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    assert {"LIBERVIA_AUTH_PEPPER", "ADMIN_TOKEN", "BASE_DIR"} <= names


# --- Grafana -----------------------------------------------------------------------------------------------------

def test_dashboard_uses_only_metrics_the_gateway_exposes_and_covers_them():
    exprs = dashboard_exprs()
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used <= SERIES_NAMES, f"unknown metrics: {sorted(used - SERIES_NAMES)}"
    base = {name.removesuffix("_bucket") for name in used}
    assert METRICS <= base, f"no panel for: {sorted(METRICS - base)}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path):
    # Grafana's variables substituted with what they stand for, then parsed by promtool as recording rules.
    rules = [{"record": f"dashboard:query_{i}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*")}
             for i, expr in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_provisioned_from_the_prometheus_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((CONTRIB / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == uid
    assert dashboard["uid"] and dashboard["title"] == "Libervia Gateway"
