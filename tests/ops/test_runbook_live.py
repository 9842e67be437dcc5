"""Issue 7 acceptance: the commands of docs/RUNBOOK.md, pasted into bash with real curl and jq against a live
gateway, print what the runbook says they print.

Commands are read from the runbook itself (see :mod:`tests.ops.runbook_shell`). Docker, systemd and host
inspection commands (top, iostat, netstat, df) are not run: they exercise the host, not this product.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from libervia import __version__
from tests.core import bodies
from tests.gateway_process import GatewayProcess
from tests.ops.runbook_shell import Operator, block, require_tool, step

# Gives the gateway an open route that raises, the one real way for a client to see a 5xx.
CRASH_ROUTE = {"LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.slow_route_plugin"]'}


@pytest.fixture(autouse=True)
def operator_tools() -> None:
    require_tool("curl")
    require_tool("jq")


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_factory(CRASH_ROUTE)


@pytest.fixture
def operator(gateway: GatewayProcess) -> Operator:
    return Operator(gateway)


def jq_values(output: str) -> list:
    """The JSON values jq printed (pretty-printed or one per line)."""
    decoder, text, values, position = json.JSONDecoder(), output.strip(), [], 0
    while position < len(text):
        value, end = decoder.raw_decode(text, position)
        values.append(value)
        position = len(text) - len(text[end:].lstrip())
    return values


def tar_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


async def decide(gateway: GatewayProcess, token: str) -> dict:
    status, _, body = await gateway.request("POST", "/api/v1/decisoes", token, json=bodies.decisao())
    assert status == 201, body
    return body


# --- start-up ----------------------------------------------------------------------------------------------------

def test_post_startup_checks_print_what_the_runbook_expects(gateway: GatewayProcess, operator: Operator) -> None:
    for command in ("curl -s http://localhost:3000/health | jq .status",
                    "curl -s http://localhost:3000/health/ready | jq .status"):
        check = step(command)
        assert check.expected == '"ok"'
        assert operator.ok(check.command).strip() == check.expected

    metrics = step('-w "%{http_code}\\n"')
    assert metrics.expected is not None and metrics.expected.startswith("200")
    assert operator.ok(metrics.command).strip() == "200"
    wrong_token = Operator(gateway, ADMIN_TOKEN="not-the-admin-token-at-all")
    assert wrong_token.ok(metrics.command).strip() == "401"  # "(401 = token errado)"

    startup_errors = step("--tail=50")
    assert startup_errors.expected == "nenhuma linha"
    assert operator.ok(startup_errors.command) == ""

    assert operator.ok(step("libervia --version").command).strip() == f"libervia {__version__}"
    assert operator.ok(step("curl -s http://localhost:3000/health | jq -r .version").command).strip() == __version__

    checks = operator.ok(step("libervia check").command).splitlines()
    assert checks and all(line.startswith("[ok]") for line in checks), checks

    template = operator.ok(step("./scripts/print_env_template.sh").command)
    assert {"LIBERVIA_AUTH_PEPPER=", "ADMIN_TOKEN=", "BASE_DIR=/data/libervia"} <= set(template.splitlines())
    for secret in (gateway.env["LIBERVIA_AUTH_PEPPER"], gateway.admin_token):
        assert secret not in template


# --- PROC-002 to PROC-006: metrics and logs after the traffic that moves them -----------------------------------

async def test_incident_diagnosis_shows_the_traffic(gateway: GatewayProcess, operator: Operator,
                                                    unique_id: Callable[[str], str]) -> None:
    limited, other = unique_id("limited"), unique_id("other")
    await gateway.create_tenant(limited, quotas={"rateLimitRpm": 1})
    await gateway.create_tenant(other)
    limited_key, other_key = await gateway.create_key(limited), await gateway.create_key(other)
    assert (await gateway.request("GET", "/api/v1/eventlog/status", limited_key))[0] == 200
    assert (await gateway.request("GET", "/api/v1/eventlog/status", limited_key))[0] == 429
    assert (await gateway.request("GET", "/api/v1/eventlog/status", "not-a-key"))[0] == 401
    conflict = await gateway.request("GET", "/api/v1/eventlog/status", other_key, headers={"X-Tenant-Id": limited})
    assert conflict[0] == 400 and conflict[2]["code"] == "TENANT_CONFLICT"
    assert (await gateway.request("GET", "/test/crash"))[0] == 500

    samples = {
        "http_request_duration_ms":
            'libervia_http_request_duration_ms_bucket{method="GET",route="/api/v1/eventlog/status",le="+Inf"} 4',
        "http_errors_total": 'libervia_http_errors_total{method="GET",route="/test/crash",status="500"} 1',
        "auth_failures_total": 'libervia_auth_failures_total{reason="INVALID_TOKEN",tenant_id="unknown"} 1',
        "tenant_conflicts_total": f'libervia_tenant_conflicts_total{{tenant_id="{other}"}} 1',
        "rate_limited_total": f'libervia_rate_limited_total{{tenant_id="{limited}"}} 1',
    }
    for metric, sample in samples.items():
        lines = operator.ok(step(f'grep "{metric}"').command).splitlines()
        assert sample in lines, (metric, lines)

    # PROC-006: the tenant's configuration explains the 429s; raising the quota is one PATCH.
    config = 'curl -s -H "Authorization: Bearer $ADMIN_TOKEN" \\\n  http://localhost:3000/admin/tenants/<tenant-id>'
    assert json.loads(operator.ok(step(config).command, tenant_id=limited))["quotas"]["rateLimitRpm"] == 1
    raised = operator.ok(step('"rateLimitRpm": 2000').command, tenant_id=limited)
    assert jq_values(raised)[0]["rateLimitRpm"] == 2000
    assert (await gateway.request("GET", "/api/v1/eventlog/status", limited_key))[0] == 200

    # PROC-002: slowest routes from the log.
    slowest = operator.ok(step("responseTimeMs != null").command).splitlines()
    assert slowest and all(re.fullmatch(r"[\d.]+ [A-Z]+ /\S*", line) for line in slowest), slowest
    assert [float(line.split()[0]) for line in slowest] == sorted((float(li.split()[0]) for li in slowest),
                                                                  reverse=True)

    # PROC-003: the 5xx, counted by message and by route and tenant.
    assert "/test/crash" in operator.ok(step("grep -i error | tail -50").command)
    by_message = operator.ok(step("jq -r '.msg'").command).splitlines()
    assert [line.split() for line in by_message] == [["1", "GET", "/test/crash", "500", "INTERNAL_ERROR"]]
    by_route = operator.ok(step('"\\(.route) \\(.tenantId)"').command).splitlines()
    assert [line.split() for line in by_route] == [["1", "/test/crash", "null"]]

    # PROC-004: where the bad tokens come from, the tenant's keys, and a rotation that retires the old one.
    assert [line.split() for line in operator.ok(step("jq -r '.remoteAddr'").command).splitlines()] == [
        ["1", "127.0.0.1"]]
    keys = jq_values(operator.ok(step("/keys | jq .").command, tenant_id=other))[0]
    assert keys["count"] == 1
    rotated = jq_values(operator.ok(step("/keys/rotate").command, tenant_id=other))[0]
    assert rotated["revokedKeyIds"] == [keys["keys"][0]["keyId"]]
    assert (await gateway.request("GET", "/api/v1/eventlog/status", rotated["token"]))[0] == 200
    assert (await gateway.request("GET", "/api/v1/eventlog/status", other_key))[0] == 401

    # PROC-005: the conflicting request in the log, and who sent it.
    conflicts = operator.ok(step('docker logs libervia-gateway 2>&1 | grep "TENANT_CONFLICT"').command)
    assert [json.loads(line)["code"] for line in conflicts.splitlines()] == ["TENANT_CONFLICT"]
    senders = operator.ok(step('grep "TENANT_CONFLICT" | \\\n  jq -r').command).splitlines()
    assert [line.split() for line in senders] == [["1", "127.0.0.1", "/api/v1/eventlog/status"]]


# --- PROC-007 --------------------------------------------------------------------------------------------------

async def test_event_log_diagnosis_finds_the_corrupted_entry(gateway: GatewayProcess, operator: Operator,
                                                             unique_id: Callable[[str], str],
                                                             tmp_path: Path) -> None:
    tenant = unique_id("audit")
    await gateway.create_tenant(tenant)
    token = await gateway.create_key(tenant)
    for _ in range(2):
        await decide(gateway, token)
    log = gateway.base_dir / "tenants" / tenant / "eventlog" / "events.jsonl"
    total = len(log.read_bytes().splitlines())

    verify = step("/audit/verify").command
    assert json.loads(operator.ok(verify, tenant_id=tenant)) | {"headHash": None} == {
        "valid": True, "totalVerified": total, "headHash": None}
    listing = operator.ok(step("ls -la $BASE_DIR/tenants/<tenant-id>/eventlog/").command, tenant_id=tenant)
    assert re.search(r"\sevents\.jsonl$", listing, re.M) and re.search(r"\sevents\.lock$", listing, re.M)
    parsed = jq_values(operator.ok(step("head -10 | jq .").command, tenant_id=tenant))
    assert [entry["seq"] for entry in parsed] == list(range(1, 11))

    # "Fazer backup imediato", into a scratch directory instead of /backup.
    backup = block("DEST=/backup/corrupted-").replace("/backup/", f"{tmp_path}/backup/")
    operator.ok(backup, tenant_id=tenant)
    (copied,) = (tmp_path / "backup").iterdir()
    assert (copied / tenant / "eventlog" / "events.jsonl").read_bytes() == log.read_bytes()

    # Damage entry 5 in place (still valid JSON, wrong hash): the verify route names it, sed shows it.
    lines = log.read_text().splitlines(keepends=True)
    entry = json.loads(lines[4])
    entry["payload"]["tampered"] = True
    lines[4] = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    log.write_text("".join(lines))
    report = json.loads(operator.ok(verify, tenant_id=tenant))
    assert report["valid"] is False and report["firstInvalidIndex"] == 5, report
    shown = jq_values(operator.ok(step("sed -n '<firstInvalidIndex>p'").command, tenant_id=tenant,
                                  firstInvalidIndex=str(report["firstInvalidIndex"])))
    assert [entry["seq"] for entry in shown] == [5]


# --- PROC-008 --------------------------------------------------------------------------------------------------

async def test_suspended_mandates_and_tenants_are_listed_and_resumed(gateway: GatewayProcess, operator: Operator,
                                                                     unique_id: Callable[[str], str]) -> None:
    tenant = unique_id("mandates")
    await gateway.create_tenant(tenant)
    token = await gateway.create_key(tenant)
    status, _, mandate = await gateway.request("POST", f"/admin/tenants/{tenant}/mandates", gateway.admin_token,
                                               json=bodies.mandato())
    assert status == 201, mandate
    contrato = (await decide(gateway, token))["contrato"]["id"]
    status, _, consequence = await gateway.request("POST", "/api/v1/consequencias", token, json=bodies.consequencia(
        contrato, agentId="agente-1", autonomyTriggers={"severidade": "MEDIA", "violou_limites": True}))
    assert status == 201 and consequence["autonomy"]["action"] == "SUSPEND", consequence

    listed = step("mandates?status=suspended").command
    suspended = jq_values(operator.ok(listed, tenant_id=tenant))[0]
    assert [(m["id"], m["status"]) for m in suspended["mandates"]] == [(mandate["id"], "suspended")]
    per_tenant = jq_values(operator.ok(step("select(.mandates.suspended > 0)").command))
    assert per_tenant == [{"id": tenant, "suspended": 1}]
    cause = operator.ok(step('docker logs libervia-gateway 2>&1 | grep "suspended"').command)
    assert any(mandate["id"] in line and tenant in line for line in cause.splitlines()), cause

    resume = step("/mandates/<mandate-id>/resume").command
    resumed = json.loads(operator.ok(resume, tenant_id=tenant, mandate_id=mandate["id"], nome="SRE de plantao"))
    assert resumed["status"] == "active" and resumed["suspendedByConsequence"] is None
    assert jq_values(operator.ok(listed, tenant_id=tenant))[0]["total"] == 0
    # "Mandatos revogados ou expirados nao podem ser reativados (409 INVALID_STATE)"
    status, _, _ = await gateway.request("POST", f"/admin/tenants/{tenant}/mandates/{mandate['id']}/revoke",
                                         gateway.admin_token, json={"motivo": "fim do piloto"})
    assert status == 200
    refused = json.loads(operator.ok(resume, tenant_id=tenant, mandate_id=mandate["id"], nome="SRE de plantao"))
    assert refused["code"] == "INVALID_STATE"

    suspend_tenant = jq_values(operator.ok(step("/admin/tenants/<tenant-id>/suspend").command, tenant_id=tenant))
    assert suspend_tenant[0]["tenant"]["status"] == "suspended"
    assert (await gateway.request("GET", "/api/v1/eventlog/status", token))[0] != 200
    suspended_tenants = jq_values(operator.ok(step('select(.status == "suspended")').command))
    assert [t["id"] for t in suspended_tenants] == [tenant]
    resumed_tenant = json.loads(operator.ok(step("/admin/tenants/<tenant-id>/resume").command, tenant_id=tenant))
    assert resumed_tenant["tenant"]["status"] == "active"
    assert (await gateway.request("GET", "/api/v1/eventlog/status", token))[0] == 200


# --- evidence --------------------------------------------------------------------------------------------------

def test_evidence_collection_has_the_state_and_no_secret(gateway: GatewayProcess, tmp_path: Path) -> None:
    secrets = (gateway.admin_token.encode(), gateway.env["LIBERVIA_AUTH_PEPPER"].encode())
    # The script's default output is the temporary directory, /tmp on the runbook's hosts.
    operator = Operator(gateway, TMPDIR=str(tmp_path))
    collect = step("./scripts/collect_evidence.sh")
    pattern = re.escape(collect.expected.strip('"')).replace("/tmp/", re.escape(f"{tmp_path}/"))
    pattern = pattern.replace("AAAAMMDD\\-HHMMSS", r"\d{8}-\d{6}")
    printed = operator.ok(collect.command).strip()
    assert re.fullmatch(pattern, printed), (pattern, printed)
    archive = Path(printed.rsplit(" ", 1)[-1])
    assert archive.stat().st_mode & 0o777 == 0o600

    # The options the runbook lists, with the gateway's own log file.
    printed = operator.ok('./scripts/collect_evidence.sh --output "$TMPDIR/with-log" --log-file "$LOG_FILE"')
    with_log = Path(printed.strip().rsplit(" ", 1)[-1])
    assert with_log.parent == tmp_path / "with-log"
    assert b'"statusCode"' in tar_members(with_log)["gateway.log"]
    for path in (archive, with_log):
        members = tar_members(path)
        assert {"health.json", "ready.json", "metrics.txt", "metrics.json", "summary.json"} <= members.keys()
        assert json.loads(members["health.json"])["status"] == "ok"
        assert b"libervia_http_requests_total" in members["metrics.txt"]
        for name, content in members.items():
            assert not any(secret in content for secret in secrets), name

    # The manual equivalent, for a host without the libervia command (docker lines fail here, harmlessly).
    manual = block("EVIDENCE_DIR=/tmp/evidence-").replace("/tmp/", f"{tmp_path}/manual-")
    operator.run(manual)
    (archive,) = tmp_path.glob("manual-evidence-*.tar.gz")
    members = tar_members(archive)
    assert json.loads(members["health.json"])["status"] == "ok"
    assert b"libervia_http_requests_total" in members["metrics.txt"]
    for name, content in members.items():
        assert not any(secret in content for secret in secrets), name


# --- shutdown, integrity, backup and restore --------------------------------------------------------------------

def restored_entity_ids(base_dir: Path, tenant: str) -> set[str]:
    log = base_dir / "tenants" / tenant / "eventlog" / "events.jsonl"
    return {json.loads(line)["entidade_id"] for line in log.read_text().splitlines()}


async def test_shutdown_verify_backup_and_restore(gateway_factory: Callable[..., GatewayProcess],
                                                  unique_id: Callable[[str], str], tmp_path: Path) -> None:
    gateway = gateway_factory()
    operator = Operator(gateway)
    tenant = unique_id("ops")
    await gateway.create_tenant(tenant)
    token = await gateway.create_key(tenant)
    before = (await decide(gateway, token))["contrato"]["id"]

    printed = operator.ok(step("./scripts/run_backup_frio.sh").command).strip().splitlines()
    archive = Path(printed[-1])
    assert archive.is_file() and archive.parent == gateway.base_dir.parent / "backups"  # BASE_DIR/../backups
    after = (await decide(gateway, token))["contrato"]["id"]

    processes = operator.ok(step('ps auxww | grep "[l]ibervia serve"').command).splitlines()
    assert str(gateway.proc.pid) in [line.split()[1] for line in processes]
    operator.ok(step("kill -SIGTERM <PID>").command, PID=str(gateway.proc.pid))
    assert gateway.proc.wait(timeout=30) == 0  # "Aguardar ate 30 segundos para finalizacao"
    gone = operator.ok(step('ps auxww | grep "[l]ibervia serve" || echo').command).splitlines()
    assert str(gateway.proc.pid) not in [line.split()[1] for line in gone if len(line.split()) > 1]

    verified = operator.ok(step("libervia verify --all --base-dir $BASE_DIR").command)
    assert re.search(rf"^tenant {re.escape(tenant)}: valid\b", verified, re.M), verified
    operator.ok(step("libervia verify --tenant <tenant-id> --base-dir $BASE_DIR").command, tenant_id=tenant)

    # PROC-007: restore beside the data first, to compare.
    check_dir = tmp_path / "restore-check"
    for command in ("libervia restore <backup-file> --base-dir /tmp/restore-check",
                    "libervia verify --tenant <tenant-id> --base-dir /tmp/restore-check"):
        operator.ok(step(command).command.replace("/tmp/restore-check", str(check_dir)),
                    backup_file=str(archive), tenant_id=tenant)
    assert before in restored_entity_ids(check_dir, tenant)

    # Restoring needs an empty BASE_DIR (exit 4 otherwise) or --force, which keeps the old content aside.
    fresh = Operator(gateway, BASE_DIR=str(tmp_path / "fresh"), ARCHIVE=str(archive))
    assert "verified 1 tenant chains" in fresh.ok('./scripts/restore_backup.sh "$ARCHIVE"')
    assert restored_entity_ids(tmp_path / "fresh", tenant) == restored_entity_ids(check_dir, tenant)
    not_empty = Operator(gateway, ARCHIVE=str(archive)).run('./scripts/restore_backup.sh "$ARCHIVE"')
    assert not_empty.returncode == 4, not_empty.stderr
    rollback = step("./scripts/restore_backup.sh <backup-file> --force").command
    operator.ok(rollback, backup_file=str(archive))
    (aside,) = gateway.base_dir.glob(".pre-restore-*")
    assert after in restored_entity_ids(aside, tenant)
    assert before in restored_entity_ids(gateway.base_dir, tenant)
    assert after not in restored_entity_ids(gateway.base_dir, tenant)

    restarted = gateway_factory(base_dir=gateway.base_dir)
    status, _, report = await restarted.request("GET", f"/admin/tenants/{tenant}/audit/verify", restarted.admin_token)
    assert status == 200 and report["valid"] is True, report
    assert (await restarted.request("GET", "/api/v1/eventlog/status", token))[0] == 200
