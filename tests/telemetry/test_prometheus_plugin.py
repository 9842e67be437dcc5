"""The telemetry_prometheus plugin's internals: counting, label hygiene, exposition, the recent window.

A real :class:`libervia.gateway.Gateway` and a real pluggy manager carry the plugin; only the tenant registry
and the runtime are small stand-ins here (``is_registered``, ``counts_by_status``, ``active_count``), since
they are not what is tested. The exposition is read back with the reference parser of prometheus_client.
The same counters are checked end to end through a real server in ``test_metrics_e2e.py``.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libervia import hookimpl
from libervia.gateway import Gateway
from libervia.hookcalls import call_first
from libervia.plugin_manager import new_plugin_manager
from libervia.schemas import problems
from libervia.telemetry import AUTH_FAILURE, EVENTLOG_APPEND, RATE_LIMITED, TENANT_CONFLICT, RequestObservation
from libervia.testing.contracts.ratelimit import FakeClock
from libervia_plugins import telemetry_prometheus as plugin
from libervia_plugins.telemetry_prometheus import PrometheusTelemetry, telemetry_of
from libervia_plugins.telemetry_prometheus.metrics import MAX_REASONS

FAMILIES = [
    ("libervia_http_requests_total", "counter"),
    ("libervia_http_request_duration_ms", "histogram"),
    ("libervia_http_errors_total", "counter"),
    ("libervia_auth_failures_total", "counter"),
    ("libervia_tenant_conflicts_total", "counter"),
    ("libervia_rate_limited_total", "counter"),
    ("libervia_rate_limiter_errors_total", "counter"),
    ("libervia_tenants", "gauge"),
    ("libervia_active_instances", "gauge"),
    ("libervia_eventlog_appends_total", "counter"),
    ("libervia_process_uptime_seconds", "gauge"),
    ("libervia_tenant_requests_total", "counter"),
]


class Registry:
    def __init__(self, tenants: dict[str, str]) -> None:
        self.tenants = tenants

    def is_registered(self, tenant_id: str) -> bool:
        return tenant_id in self.tenants

    def counts_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.tenants.values():
            counts[status] = counts.get(status, 0) + 1
        return counts


class Runtime:
    def active_count(self) -> int:
        return 2


def config(**operational: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"operational": operational} if operational else {}
    assert problems(section, "plugins/telemetry_prometheus", fill_defaults=True) == []
    return section


@pytest.fixture
def gateway() -> Gateway:
    pm = new_plugin_manager()
    pm.register(plugin, name=plugin.PLUGIN_NAME)
    gw = Gateway(settings=None, pm=pm, plugin_configs={plugin.PLUGIN_NAME: config()})  # type: ignore[arg-type]
    gw.registry = Registry({"acme": "active", "globex": "active", "initech": "suspended"})  # type: ignore[assignment]
    gw.runtime = Runtime()  # type: ignore[assignment]
    return gw


def observe(gw: Gateway, method: str = "GET", route: str = "/api/v1/decisoes", status: int = 200,
            ms: float = 3.0, tenant: str | None = None) -> None:
    gw.pm.hook.libervia_observe_requests(gateway=gw,
                                         observations=[RequestObservation(method, route, status, ms, tenant)])


async def scrape(gw: Gateway, tenant_id: str | None = None) -> dict[str, Any]:
    """Render through the hook, parse with the reference parser: {family: {"type", "samples": {(name, labels): v}}}."""
    content_type, body = await call_first(gw.pm.hook.libervia_render_metrics, gateway=gw, fmt="prometheus",
                                          tenant_id=tenant_id)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    parsed = {}
    for family in text_string_to_metric_families(text):
        # prometheus_client strips "_total" from counter family names; the exposition itself keeps it
        name = family.name + "_total" if family.type == "counter" else family.name
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        parsed[name] = {"type": family.type, "help": family.documentation, "samples": samples}
    return parsed


def value(parsed: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    return parsed[family]["samples"][(sample or family, tuple(sorted(labels.items())))]


async def test_every_family_is_exposed_with_help_and_type_before_any_sample(gateway: Gateway) -> None:
    _, body = await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt="prometheus",
                               tenant_id=None)
    text = body.decode()
    for name, kind in FAMILIES:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    parsed = await scrape(gateway)
    assert [(name, parsed[name]["type"]) for name, _ in FAMILIES] == FAMILIES
    assert value(parsed, "libervia_tenants", status="active") == 2
    assert value(parsed, "libervia_tenants", status="suspended") == 1
    assert value(parsed, "libervia_tenants", status="deleted") == 0
    assert value(parsed, "libervia_active_instances") == 2
    assert value(parsed, "libervia_process_uptime_seconds") >= 0
    assert parsed["libervia_http_requests_total"]["samples"] == {}


async def test_requests_errors_and_latency_are_counted_exactly(gateway: Gateway) -> None:
    for _ in range(7):
        observe(gateway, ms=3.0, tenant="acme")
    for ms in (4.0, 30.0, 700.0):
        observe(gateway, "POST", "/api/v1/decisoes", 201, ms, tenant="acme")
    observe(gateway, "GET", "/admin/tenants/{id}", 404, 1.0)
    observe(gateway, "GET", "/admin/tenants/{id}", 500, 20_000.0)
    observe(gateway, "GET", "/admin/tenants/{id}", 401, 0.5)
    parsed = await scrape(gateway)
    req = "libervia_http_requests_total"
    assert value(parsed, req, method="GET", route="/api/v1/decisoes", status="200") == 7
    assert value(parsed, req, method="POST", route="/api/v1/decisoes", status="201") == 3
    assert len(parsed[req]["samples"]) == 5
    errors = parsed["libervia_http_errors_total"]["samples"]
    assert {labels: v for (_, labels), v in errors.items()} == {
        (("method", "GET"), ("route", "/admin/tenants/{id}"), ("status", status)): 1 for status in ("401", "404", "500")
    }
    hist = "libervia_http_request_duration_ms"
    post = {"method": "POST", "route": "/api/v1/decisoes"}
    assert value(parsed, hist, f"{hist}_count", **post) == 3
    assert value(parsed, hist, f"{hist}_sum", **post) == pytest.approx(734.0)
    assert value(parsed, hist, f"{hist}_bucket", le="5", **post) == 1
    assert value(parsed, hist, f"{hist}_bucket", le="50", **post) == 2
    assert value(parsed, hist, f"{hist}_bucket", le="1000", **post) == 3
    slow = {"method": "GET", "route": "/admin/tenants/{id}"}
    assert value(parsed, hist, f"{hist}_bucket", le="10000", **slow) == 2
    assert value(parsed, hist, f"{hist}_bucket", le="+Inf", **slow) == 3
    tenant = "libervia_tenant_requests_total"
    assert value(parsed, tenant, tenant_id="acme", status="200") == 7
    assert value(parsed, tenant, tenant_id="acme", status="201") == 3


async def test_inf_bucket_equals_count_for_every_series(gateway: Gateway) -> None:
    rng = random.Random(3)
    for _ in range(500):
        observe(gateway, rng.choice(["GET", "POST"]), rng.choice(["/a", "/b/{id}"]), 200,
                rng.choice([rng.expovariate(0.01), math.nan, math.inf, -1.0, 0.0]))
    _, body = await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt="prometheus",
                               tenant_id=None)
    family = next(f for f in text_string_to_metric_families(body.decode())
                  if f.name == "libervia_http_request_duration_ms")
    counts = {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name.endswith("_count")}
    infs = {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")): s.value
            for s in family.samples if s.labels.get("le") == "+Inf"}
    assert len(counts) == 4
    assert counts == infs
    assert sum(counts.values()) == 500
    assert all(math.isfinite(s.value) for s in family.samples)


async def test_events_are_counted_with_safe_labels(gateway: Gateway) -> None:
    gateway.count(AUTH_FAILURE, reason="INVALID_TOKEN", tenant_id="acme")
    gateway.count(AUTH_FAILURE, reason="INVALID_TOKEN", tenant_id="acme")
    gateway.count(AUTH_FAILURE, reason="MISSING_TOKEN", tenant_id="not-a-tenant")
    gateway.count(AUTH_FAILURE, reason="weird reason\n", tenant_id="unknown")
    gateway.count(TENANT_CONFLICT, tenant_id="globex")
    gateway.count(RATE_LIMITED, tenant_id="acme")
    gateway.count(EVENTLOG_APPEND, value=5, tenant_id="acme")
    gateway.count(EVENTLOG_APPEND, value=2, tenant_id="acme")
    gateway.count("some_future_event", tenant_id="acme")  # unknown names are ignored
    parsed = await scrape(gateway)
    auth = "libervia_auth_failures_total"
    assert value(parsed, auth, reason="INVALID_TOKEN", tenant_id="acme") == 2
    assert value(parsed, auth, reason="MISSING_TOKEN", tenant_id="unknown") == 1
    assert value(parsed, auth, reason="OTHER", tenant_id="unknown") == 1
    assert value(parsed, "libervia_tenant_conflicts_total", tenant_id="globex") == 1
    assert value(parsed, "libervia_rate_limited_total", tenant_id="acme") == 1
    assert value(parsed, "libervia_eventlog_appends_total", tenant_id="acme") == 7


async def test_hostile_label_values_cannot_grow_the_series(gateway: Gateway) -> None:
    rng = random.Random(11)
    for _ in range(10_000):
        hostile = "".join(rng.choices(string.ascii_lowercase + string.digits + '-"\\{}\n', k=rng.randint(1, 60)))
        observe(gateway, rng.choice(["GET", "BREW", hostile.upper()[:8] or "X"]), "unmatched", 404, 1.0, hostile)
        gateway.count(AUTH_FAILURE, reason=rng.choice(["INVALID_TOKEN", hostile]), tenant_id=hostile)
        gateway.count(TENANT_CONFLICT, tenant_id=hostile)
        gateway.count(RATE_LIMITED, tenant_id=hostile)
    parsed = await scrape(gateway)
    series = sum(len(family["samples"]) for family in parsed.values())
    assert len(parsed["libervia_http_requests_total"]["samples"]) <= 2  # GET and OTHER
    assert len(parsed["libervia_auth_failures_total"]["samples"]) == 2  # INVALID_TOKEN/OTHER x unknown
    assert series < 60


async def test_distinct_reason_codes_are_capped(gateway: Gateway) -> None:
    for n in range(100):
        gateway.count(AUTH_FAILURE, reason=f"CODE_{n}", tenant_id="acme")
    parsed = await scrape(gateway)
    samples = parsed["libervia_auth_failures_total"]["samples"]
    assert len(samples) == MAX_REASONS + 1
    assert value(parsed, "libervia_auth_failures_total", reason="OTHER", tenant_id="acme") == 100 - MAX_REASONS


async def test_label_values_and_help_are_escaped(gateway: Gateway) -> None:
    route = 'odd "route" \\ with\nnewline'
    observe(gateway, route=route)
    parsed = await scrape(gateway)
    assert value(parsed, "libervia_http_requests_total", method="GET", route=route, status="200") == 1


async def test_tenant_scope_shows_only_that_tenants_series(gateway: Gateway) -> None:
    for tenant in ("acme", "globex"):
        observe(gateway, tenant=tenant)
        gateway.count(RATE_LIMITED, tenant_id=tenant)
        gateway.count(AUTH_FAILURE, reason="INSUFFICIENT_ROLE", tenant_id=tenant)
    gateway.count(EVENTLOG_APPEND, value=3, tenant_id="acme")
    parsed = await scrape(gateway, tenant_id="acme")
    assert sorted(parsed) == sorted(["libervia_auth_failures_total", "libervia_tenant_conflicts_total",
                                     "libervia_rate_limited_total", "libervia_eventlog_appends_total",
                                     "libervia_tenant_requests_total"])
    labels = {dict(labels)["tenant_id"] for family in parsed.values() for (_, labels) in family["samples"]}
    assert labels == {"acme"}
    assert value(parsed, "libervia_eventlog_appends_total", tenant_id="acme") == 3
    assert parsed["libervia_tenant_conflicts_total"]["samples"] == {}  # HELP/TYPE kept, no sample


async def test_json_rendering(gateway: Gateway) -> None:
    observe(gateway, ms=7.0)
    gateway.count(RATE_LIMITED, tenant_id="acme")
    content_type, body = await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt="json",
                                          tenant_id=None)
    assert content_type == "application/json"
    document = orjson.loads(body)
    assert document["timestamp"].endswith("Z")
    by_name = {m["name"]: m for m in document["metrics"]}
    assert [(m["name"], m["type"]) for m in document["metrics"]] == FAMILIES
    assert all(m["help"] for m in document["metrics"])
    assert by_name["libervia_rate_limited_total"]["values"] == [{"labels": {"tenant_id": "acme"}, "value": 1}]
    [histogram] = by_name["libervia_http_request_duration_ms"]["values"]
    assert histogram["labels"] == {"method": "GET", "route": "/api/v1/decisoes"}
    assert histogram["value"]["count"] == 1
    assert histogram["value"]["sum"] == 7.0
    buckets = histogram["value"]["buckets"]
    assert buckets[0] == {"le": "5", "count": 0}
    assert buckets[1] == {"le": "10", "count": 1}
    assert buckets[-1] == {"le": "+Inf", "count": 1}
    scoped = orjson.loads((await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway,
                                            fmt="json", tenant_id="globex"))[1])
    assert all(m["values"] == [] for m in scoped["metrics"])


async def test_a_later_plugin_can_replace_rendering(gateway: Gateway) -> None:
    class Replacement:
        @hookimpl
        def libervia_render_metrics(self, fmt: str) -> tuple[str, bytes]:
            return "text/plain", f"replaced {fmt}".encode()

    gateway.pm.register(Replacement(), name="replacement")
    assert await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt="json",
                            tenant_id=None) == ("text/plain", b"replaced json")


# --- operational health over the recent window -----------------------------------------------------------------

def telemetry(gateway: Gateway, clock: FakeClock, **operational: Any) -> PrometheusTelemetry:
    return PrometheusTelemetry(gateway, config(**operational), clock=clock)


def req(t: PrometheusTelemetry, status: int = 200, ms: float = 3.0) -> None:
    t.observe(RequestObservation("GET", "/api/v1/decisoes", status, ms, None))


def test_healthy_window_is_ok(gateway: Gateway) -> None:
    clock = FakeClock(1000.0)
    t = telemetry(gateway, clock)
    clock.advance(60)
    for _ in range(100):
        req(t)
    report = t.operational_health()
    assert report["status"] == "OK"
    assert report["alerts"] == []
    assert report["requests"] == 100
    assert report["window_s"] == 60
    assert {c["alert"] for c in report["checks"].values()} == {
        "ERROR_RATE_SPIKE", "HIGH_LATENCY", "AUTH_FAILURE_SPIKE", "TENANT_CONFLICT_SPIKE", "RATE_LIMIT_ABUSE",
        "MEMORY_PRESSURE"}
    assert report["checks"]["memory"]["value"] > 1  # this test process's real RSS, in MiB


def test_error_spike_is_judged_on_the_window_not_the_lifetime(gateway: Gateway) -> None:
    clock = FakeClock(1000.0)
    t = telemetry(gateway, clock)
    for _ in range(1000):
        req(t)
    clock.advance(400)  # the healthy traffic leaves the 300 s window
    for n in range(50):
        req(t, 500 if n < 2 else 200)
    check = t.operational_health()["checks"]["error_rate"]
    assert (check["status"], check["value"]) == ("DEGRADED", 0.04)
    for _ in range(3):
        req(t, 503)
    report = t.operational_health()
    assert report["status"] == "CRITICAL"
    assert report["alerts"] == ["ERROR_RATE_SPIKE"]
    clock.advance(310)
    assert t.operational_health()["status"] == "OK"


def test_latency_events_and_memory_checks(gateway: Gateway) -> None:
    clock = FakeClock(1000.0)
    t = telemetry(gateway, clock, thresholds={"memory": {"degraded": 1, "critical": 1_000_000}})
    clock.advance(120)
    for n in range(100):
        req(t, 429 if n < 20 else 200, 3000.0 if n < 10 else 20.0)
    for _ in range(20):
        t.count(RATE_LIMITED, {"tenant_id": "acme"}, 1)
    for _ in range(100):
        t.count(AUTH_FAILURE, {"reason": "INVALID_TOKEN", "tenant_id": "unknown"}, 1)
    for _ in range(12):
        t.count(TENANT_CONFLICT, {"tenant_id": "unknown"}, 1)
    checks = t.operational_health()["checks"]
    assert checks["p95_latency"]["status"] == "DEGRADED"
    assert 2500 < checks["p95_latency"]["value"] <= 5000
    assert (checks["rate_limited_share"]["status"], checks["rate_limited_share"]["value"]) == ("DEGRADED", 0.2)
    assert (checks["auth_failures"]["status"], checks["auth_failures"]["value"]) == ("DEGRADED", 50.0)
    assert (checks["tenant_conflicts"]["status"], checks["tenant_conflicts"]["value"]) == ("DEGRADED", 6.0)
    assert checks["memory"]["status"] == "DEGRADED"
    assert checks["error_rate"]["status"] == "OK"  # 429s are not server errors


def test_too_little_traffic_is_not_judged(gateway: Gateway) -> None:
    clock = FakeClock(1000.0)
    t = telemetry(gateway, clock)
    clock.advance(60)
    for _ in range(5):
        req(t, 500, 9000.0)
    checks = t.operational_health()["checks"]
    assert checks["error_rate"] == {**checks["error_rate"], "status": "OK", "value": None}
    assert checks["p95_latency"]["value"] is None


def test_plugin_state_is_per_gateway(gateway: Gateway) -> None:
    other = Gateway(settings=None, pm=gateway.pm, plugin_configs={plugin.PLUGIN_NAME: config()})  # type: ignore[arg-type]
    observe(gateway)
    assert telemetry_of(gateway) is telemetry_of(gateway)
    assert telemetry_of(other) is not telemetry_of(gateway)
    assert telemetry_of(other).window.totals().requests == 0
    assert telemetry_of(gateway).window.totals().requests == 1
