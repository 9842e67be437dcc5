"""PostgreSQL and Redis going away under a real gateway, simulated by cutting a TCP proxy the test owns (the shared
servers are never stopped): readiness and writes say 503 while the store is gone, service resumes by itself,
nothing acknowledged is lost, and a client never sees a 500."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import postgres_test_dsn, redis_test_url
from tests.core import bodies
from tests.gateway_process import GatewayProcess
from tests.scale.tcp_proxy import CuttableProxy
from tests.storage_postgres.conftest import drop_schema, postgres_env, stored_lines


async def until(check: Any, patience_s: float = 30.0) -> Any:
    deadline = time.monotonic() + patience_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.1)


@pytest.fixture
async def postgres_proxy() -> AsyncIterator[tuple[CuttableProxy, str, str]]:
    dsn = postgres_test_dsn()
    proxy = await CuttableProxy("127.0.0.1", 5432).start()
    schema = f"test_{secrets.token_hex(6)}"
    yield proxy, dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), schema
    await proxy.close()
    await drop_schema(dsn, schema)


@pytest.mark.postgres
async def test_postgres_going_away_mid_load_gives_503_then_resumes_and_loses_nothing(
        postgres_proxy: tuple[CuttableProxy, str, str], tmp_path: Any) -> None:
    proxy, proxied_dsn, schema = postgres_proxy
    gateway = GatewayProcess(tmp_path / "data", {
        **postgres_env(proxied_dsn, schema),
        "LIBERVIA_PLUGIN__STORAGE_POSTGRES__COMMAND_TIMEOUT_S": "2",
        "LIBERVIA_PLUGIN__STORAGE_POSTGRES__CONNECT_TIMEOUT_S": "1",
    })
    await asyncio.to_thread(gateway.start)  # the proxy serves on this test's event loop meanwhile
    try:
        await gateway.create_tenant("outage", quotas={"rateLimitRpm": 0})
        token = await gateway.create_key("outage")
        acknowledged: list[str] = []
        statuses: Counter[int] = Counter()
        codes: Counter[str] = Counter()
        stop = asyncio.Event()

        async with aiohttp.ClientSession() as session:
            async def decide() -> tuple[int, Any]:
                async with session.post(gateway.url + "/api/v1/decisoes", json=bodies.decisao(),
                                        headers={"Authorization": f"Bearer {token}"}) as response:
                    return response.status, await response.json(content_type=None)

            async def writer() -> None:
                while not stop.is_set():
                    status, body = await decide()
                    statuses[status] += 1
                    if status == 201:
                        acknowledged.append(body["episodio_id"])
                    else:
                        codes[body["code"]] += 1
                    await asyncio.sleep(0.01)

            async def ready_status() -> int:
                async with session.get(gateway.url + "/health/ready") as response:
                    return response.status

            writers = [asyncio.create_task(writer()) for _ in range(4)]
            await until(lambda: asyncio.sleep(0, len(acknowledged) >= 20))
            await proxy.cut()
            await until(lambda: asyncio.sleep(0, codes["STORAGE_UNAVAILABLE"] >= 3))
            assert await until(lambda: _is(ready_status, 503))
            before_restore = len(acknowledged)
            await proxy.restore()
            await until(lambda: asyncio.sleep(0, len(acknowledged) >= before_restore + 20))
            assert await until(lambda: _is(ready_status, 200))
            stop.set()
            await asyncio.gather(*writers)

        assert set(statuses) <= {201, 503}, statuses
        assert set(codes) == {"STORAGE_UNAVAILABLE"}, codes
        status, _, verify = await gateway.request("GET", "/admin/tenants/outage/audit/verify", gateway.admin_token)
        assert status == 200 and verify["valid"] is True
    finally:
        await asyncio.to_thread(gateway.stop)
    text = await stored_lines(postgres_test_dsn(), schema, "outage")
    assert [episode for episode in acknowledged if episode not in text] == []


async def _is(probe: Any, expected: int) -> bool:
    return await probe() == expected


@pytest.fixture
async def redis_proxy() -> AsyncIterator[tuple[CuttableProxy, str]]:
    url = redis_test_url()
    proxy = await CuttableProxy("127.0.0.1", 6379).start()
    yield proxy, url.replace("127.0.0.1:6379", f"127.0.0.1:{proxy.port}")
    await proxy.close()


@pytest.mark.redis
@pytest.mark.parametrize("on_error", ["allow", "deny"])
async def test_redis_going_away_fails_open_or_closed_logged_never_500(
        redis_proxy: tuple[CuttableProxy, str], tmp_path: Any, on_error: str) -> None:
    proxy, proxied_url = redis_proxy
    gateway = GatewayProcess(tmp_path / "data", {
        "LIBERVIA_RATE_LIMITER": "ratelimit_redis",
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL": proxied_url,
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__KEY_PREFIX": f"test:{secrets.token_hex(4)}:",
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__ON_ERROR": on_error,
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__SOCKET_TIMEOUT_S": "0.5",
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__SOCKET_CONNECT_TIMEOUT_S": "0.5",
    })
    await asyncio.to_thread(gateway.start)
    try:
        await gateway.create_tenant("redis-down", quotas={"rateLimitRpm": 100000})
        token = await gateway.create_key("redis-down")
        status, _, _ = await gateway.request("GET", "/api/v1/eventlog/status", token)
        assert status == 200
        await proxy.cut()
        seen = Counter()
        for _ in range(10):
            status, _, body = await gateway.request("GET", "/api/v1/eventlog/status", token)
            seen[(status, body.get("code") if isinstance(body, dict) else None)] += 1
        expected = (200, None) if on_error == "allow" else (429, "RATE_LIMITED")
        assert set(seen) == {expected}, seen
        ready, _, body = await gateway.request("GET", "/health/ready")
        assert ready == (200 if on_error == "allow" else 503), body
        _, _, metrics = await gateway.request("GET", "/internal/metrics/json", gateway.admin_token)
        outcome = "allowed" if on_error == "allow" else "rejected"
        counted = [v["value"] for m in metrics["metrics"] if m["name"] == "libervia_rate_limiter_errors_total"
                   for v in m["values"] if v["labels"] == {"outcome": outcome}]
        assert counted and counted[0] >= 10, metrics  # every decision taken without Redis is counted
        await proxy.restore()
        await until(lambda: _status_is(gateway, token, 200))
    finally:
        await asyncio.to_thread(gateway.stop)
    warnings = [line for line in gateway.log_lines() if "Redis unreachable" in line["msg"]]
    assert warnings and all(line["level"] == "warning" for line in warnings)


async def _status_is(gateway: GatewayProcess, token: str, expected: int) -> bool:
    status, _, _ = await gateway.request("GET", "/api/v1/eventlog/status", token)
    return status == expected
