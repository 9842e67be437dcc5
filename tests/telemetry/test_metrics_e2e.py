"""Metrics through a real gateway process: exact counters after a scripted sequence, access to the metrics
routes, and bounded series under hostile tenant ids.

Each test starts its own gateway (``gateway_factory``): the counters must start from zero to be compared
exactly, and the thousands of authentication failures of the cardinality test would otherwise get 127.0.0.1
throttled for every other test sharing the session gateway.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.timeout(120)

READ = "/admin/tenants/{id}"            # an authenticated read route; tenant keys on it are rate limited
API_READ = "/api/v1/eventlog/status"    # a tenant API read route (tenant resolved from header, path or key)

N, K, M, R = 25, 3, 4, 6  # successes, auth failures per reason, tenant conflicts, rate-limited requests


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(gw: GatewayProcess, path: str = "/internal/metrics", token: str | None = None) -> str:
    status, headers, body = await gw.request("GET", path, token or gw.admin_token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return body


async def test_scripted_sequence_gives_exact_counters(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gw = gateway_factory()
    await gw.create_tenant("acme", quotas={"rateLimitRpm": 1000})
    await gw.create_tenant("globex", quotas={"rateLimitRpm": 1000})
    await gw.create_tenant("slowco", quotas={"rateLimitRpm": 2})
    acme_admin = await gw.create_key("acme", "tenant_admin")
    acme_public = await gw.create_key("acme", "public")
    slow_admin = await gw.create_key("slowco", "tenant_admin")

    for _ in range(N):
        status, headers, _ = await gw.request("GET", "/admin/tenants/acme", acme_admin)
        assert status == 200
        assert headers["RateLimit-Policy"] == '"tenant";q=1000;w=60'
    for _ in range(K):
        assert (await gw.request("GET", "/admin/tenants/acme"))[0] == 401                       # MISSING_TOKEN
        assert (await gw.request("GET", "/admin/tenants/acme", "not-a-key"))[0] == 401          # INVALID_TOKEN
        assert (await gw.request("GET", "/admin/tenants/acme", acme_public))[0] == 403          # INSUFFICIENT_ROLE
    for _ in range(M):
        status, _, body = await gw.request("GET", API_READ, acme_public, headers={"X-Tenant-Id": "globex"})
        assert (status, body["code"]) == (400, "TENANT_CONFLICT")
    limited = [await gw.request("GET", "/admin/tenants/slowco", slow_admin) for _ in range(2 + R)]
    assert [status for status, _, _ in limited] == [200, 200] + [429] * R
    _, headers, body = limited[-1]
    assert body["code"] == "RATE_LIMITED"
    assert body["retry_after"] == int(headers["Retry-After"]) >= 1
    assert headers["X-RateLimit-Limit"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["RateLimit"].startswith('"tenant";r=0;t=')

    parsed = parse(await scrape(gw))
    get_read = {"method": "GET", "route": READ}
    assert sample(parsed, "libervia_http_requests_total", **get_read, status="200") == N + 2
    assert sample(parsed, "libervia_http_requests_total", **get_read, status="401") == 2 * K
    assert sample(parsed, "libervia_http_requests_total", **get_read, status="403") == K
    assert sample(parsed, "libervia_http_requests_total", **get_read, status="429") == R
    assert sample(parsed, "libervia_http_errors_total", **get_read, status="401") == 2 * K
    assert sample(parsed, "libervia_http_errors_total", **get_read, status="403") == K
    assert sample(parsed, "libervia_http_errors_total", **get_read, status="429") == R
    assert sample(parsed, "libervia_http_errors_total", **get_read, status="200") == 0
    duration = "libervia_http_request_duration_ms"
    assert sample(parsed, f"{duration}_count", **get_read) == N + 2 + 3 * K + R
    assert sample(parsed, f"{duration}_bucket", **get_read, le="+Inf") == N + 2 + 3 * K + R
    for reason in ("MISSING_TOKEN", "INVALID_TOKEN", "INSUFFICIENT_ROLE"):
        assert sample(parsed, "libervia_auth_failures_total", reason=reason, tenant_id="acme") == K, reason
    assert sample(parsed, "libervia_tenant_conflicts_total", tenant_id="acme") == M
    assert sample(parsed, "libervia_rate_limited_total", tenant_id="slowco") == R
    assert sample(parsed, "libervia_rate_limited_total", tenant_id="acme") == 0
    assert sample(parsed, "libervia_tenants", status="active") == 3
    assert sample(parsed, "libervia_tenants", status="suspended") == 0
    assert sample(parsed, "libervia_process_uptime_seconds") > 0
    assert ("libervia_active_instances", ()) in parsed
    assert sample(parsed, "libervia_tenant_requests_total", tenant_id="slowco", status="429") == R

    # The tenant's own view: only its series, and only for its own tenant_admin (or the global admin).
    own = parse(await scrape(gw, "/internal/tenants/acme/metrics", acme_admin))
    assert {dict(labels)["tenant_id"] for (_, labels) in own} == {"acme"}
    assert sample(own, "libervia_auth_failures_total", reason="INVALID_TOKEN", tenant_id="acme") == K
    assert (await gw.request("GET", "/internal/tenants/slowco/metrics", acme_admin))[0] == 401
    assert (await gw.request("GET", "/internal/tenants/acme/metrics", acme_public))[0] == 403
    assert (await gw.request("GET", "/internal/metrics", acme_admin))[0] == 403


async def test_json_metrics_and_operational_health(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gw = gateway_factory()
    await gw.create_tenant("acme")
    admin = await gw.create_key("acme", "tenant_admin")
    for _ in range(3):
        assert (await gw.request("GET", "/admin/tenants/acme", admin))[0] == 200

    status, _, document = await gw.request("GET", "/internal/metrics/json", gw.admin_token)
    assert status == 200
    by_name = {m["name"]: m for m in document["metrics"]}
    for name in ("libervia_http_requests_total", "libervia_http_request_duration_ms", "libervia_http_errors_total",
                 "libervia_auth_failures_total", "libervia_tenant_conflicts_total", "libervia_rate_limited_total",
                 "libervia_tenants", "libervia_active_instances", "libervia_eventlog_appends_total",
                 "libervia_process_uptime_seconds"):
        assert by_name[name]["help"] and by_name[name]["type"], name
    [histogram] = [v for v in by_name["libervia_http_request_duration_ms"]["values"]
                   if v["labels"] == {"method": "GET", "route": READ}]
    assert histogram["value"]["count"] == 3
    assert histogram["value"]["buckets"][-1] == {"le": "+Inf", "count": 3}

    status, _, scoped = await gw.request("GET", "/internal/tenants/acme/metrics/json", admin)
    assert status == 200
    scoped_values = {m["name"]: m["values"] for m in scoped["metrics"]}
    assert "libervia_http_requests_total" not in scoped_values
    assert {v["labels"]["tenant_id"] for values in scoped_values.values() for v in values} == {"acme"}
    assert {"labels": {"status": "200", "tenant_id": "acme"}, "value": 3} in scoped_values[
        "libervia_tenant_requests_total"]

    status, _, report = await gw.request("GET", "/internal/health/operational", gw.admin_token)
    assert status == 200
    assert report["status"] in ("OK", "DEGRADED", "CRITICAL")
    assert {c["alert"] for c in report["checks"].values()} == {
        "ERROR_RATE_SPIKE", "HIGH_LATENCY", "AUTH_FAILURE_SPIKE", "TENANT_CONFLICT_SPIKE", "RATE_LIMIT_ABUSE",
        "MEMORY_PRESSURE"}
    assert report["checks"]["error_rate"]["status"] == "OK"
    assert (await gw.request("GET", "/internal/health/operational", admin))[0] == 403


async def test_random_tenant_ids_leave_the_series_bounded(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gw = gateway_factory()
    await gw.create_tenant("acme", quotas={"rateLimitRpm": 0})
    key = await gw.create_key("acme", "public")
    rng = random.Random(2024)

    def hostile() -> str:
        return "".join(rng.choices(string.ascii_lowercase + string.digits + "-", k=rng.randint(1, 40)))

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        tenant = hostile()
        if n % 3 == 0:    # a valid key claiming another tenant: TENANT_CONFLICT or INVALID_TENANT_ID
            url, headers = gw.url + API_READ, {"X-Tenant-Id": tenant, "Authorization": f"Bearer {key}"}
        elif n % 3 == 1:  # no key, claiming a tenant by header: MISSING_TOKEN, then throttled
            url, headers = gw.url + API_READ, {"X-Tenant-Id": tenant}
        else:             # the tenant in the path of an admin route, with a bad key
            url, headers = f"{gw.url}/admin/tenants/{tenant}", {"Authorization": "Bearer nope"}
        async with session.get(url, headers=headers) as response:
            await response.read()
            assert response.status < 500

    baseline = sum(1 for line in (await scrape(gw)).splitlines() if not line.startswith("#"))
    # From another loopback address: the flood gets that address throttled, not the scrapes from 127.0.0.1.
    connector = aiohttp.TCPConnector(limit=32, local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        pending: set[asyncio.Task[Any]] = set()
        for n in range(10_000):
            pending.add(asyncio.create_task(one(session, n)))
            if len(pending) >= 64:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        for task in await asyncio.gather(*pending, return_exceptions=True):
            assert task is None, task

    text = await scrape(gw)
    series = [line for line in text.splitlines() if not line.startswith("#")]
    # A few statuses x a few routes x (buckets + sum + count), a few reasons: nowhere near 10,000.
    assert len(series) - baseline < 150, len(series)
    labels = {dict(labels).get("tenant_id") for (_, labels) in parse(text)} - {None}
    assert labels <= {"acme", "unknown"}
