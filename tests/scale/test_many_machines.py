"""Three gateway processes (three "machines": separate BASE_DIRs) on one PostgreSQL schema and one Redis prefix,
counted from what the clients received."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import postgres_test_dsn, redis_test_url
from tests.core import bodies
from tests.gateway_process import GatewayProcess
from tests.storage_postgres.conftest import drop_schema, fetch_rows, postgres_env, stored_lines

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[GatewayProcess], str]]:
    dsn = postgres_test_dsn()
    schema = f"test_{secrets.token_hex(6)}"
    env = {
        **postgres_env(dsn, schema),
        "LIBERVIA_RATE_LIMITER": "ratelimit_redis",
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL": redis_test_url(),
        "LIBERVIA_PLUGIN__RATELIMIT_REDIS__KEY_PREFIX": f"test:{schema}:",
    }
    gateways = [GatewayProcess(tmp_path_factory.mktemp(f"machine{n}") / "data", env) for n in range(3)]
    try:
        for gateway in gateways:
            gateway.start()
        yield gateways, schema
    finally:
        for gateway in gateways:
            gateway.kill()
        asyncio.run(drop_schema(dsn, schema))


async def fresh(session: aiohttp.ClientSession, method: str, url: str, token: str,
                body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


async def tenant_everywhere(gateways: list[GatewayProcess], tenant: str, **fields: Any) -> str:
    await gateways[0].create_tenant(tenant, **fields)
    token = await gateways[0].create_key(tenant)
    deadline = time.monotonic() + 10
    for gateway in gateways:
        while (await gateway.request("GET", "/api/v1/eventlog/status", token))[0] != 200:
            assert time.monotonic() < deadline, f"{gateway.url} never saw tenant {tenant}"
            await asyncio.sleep(0.05)
    return token


async def test_a_tenant_gets_its_limit_once_across_three_gateways(trio: tuple[list[GatewayProcess], str]) -> None:
    gateways, _ = trio
    token = await tenant_everywhere(gateways, "limited3", quotas={"rateLimitRpm": 600})
    urls = itertools.cycle(gateway.url + "/api/v1/eventlog/status" for gateway in gateways)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=24)) as session:
        started = time.monotonic()
        results = await asyncio.gather(*[fresh(session, "GET", next(urls), token) for _ in range(900)])
        elapsed = time.monotonic() - started
    counts = Counter(status for status, _ in results)
    assert set(counts) <= {200, 429}, counts
    # The probes above spent 3; GCRA lets the rest of the burst through, then 10 per second.
    assert 600 * 0.95 <= counts[200] + 3 <= 600 + 10 * elapsed + 1, (counts, elapsed)


async def test_300_concurrent_decisions_over_three_gateways_give_one_chain_per_tenant(
        trio: tuple[list[GatewayProcess], str]) -> None:
    gateways, schema = trio
    tenants = {f"busy{n}": await tenant_everywhere(gateways, f"busy{n}", quotas={"rateLimitRpm": 0})
               for n in range(3)}
    targets = itertools.cycle(gateways)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as session:
        results = await asyncio.gather(*[
            fresh(session, "POST", next(targets).url + "/api/v1/decisoes", token, bodies.decisao())
            for token in tenants.values() for _ in range(100)])
    assert Counter(status for status, _ in results) == {201: 300}
    for tenant in tenants:
        status, _, verify = await gateways[1].request("GET", f"/admin/tenants/{tenant}/audit/verify",
                                                      gateways[1].admin_token)
        assert status == 200 and verify["valid"] is True, verify
    rows = await fetch_rows(postgres_test_dsn(), f'SELECT tenant, count(*) AS n FROM "{schema}".events '
                            "WHERE line LIKE '%DECISAO_REGISTRADA%' GROUP BY tenant")
    assert {row["tenant"]: row["n"] for row in rows if row["tenant"] in tenants} == dict.fromkeys(tenants, 100)


async def test_kill_9_of_one_gateway_mid_load_loses_no_acknowledged_write(
        trio: tuple[list[GatewayProcess], str]) -> None:
    gateways, schema = trio
    token = await tenant_everywhere(gateways, "survivor", quotas={"rateLimitRpm": 0})
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def client(gateway: GatewayProcess, session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                status, body = await fresh(session, "POST", gateway.url + "/api/v1/decisoes", token,
                                           bodies.decisao())
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # the killed gateway: nothing acknowledged, nothing counted
                continue
            assert status == 201, body
            acknowledged.append(body["episodio_id"])

    async with aiohttp.ClientSession() as session:
        clients = [asyncio.create_task(client(gateway, session)) for gateway in gateways for _ in range(3)]
        while len(acknowledged) < 60:
            await asyncio.sleep(0.01)
        gateways[2].kill()  # SIGKILL
        at_kill = len(acknowledged)
        while len(acknowledged) < at_kill + 60:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*clients)
    gateways[2].start()  # for the module's later users
    stored = await stored_lines(postgres_test_dsn(), schema, "survivor")
    assert [episode for episode in acknowledged if episode not in stored] == []
    status, _, verify = await gateways[0].request("GET", "/admin/tenants/survivor/audit/verify",
                                                  gateways[0].admin_token)
    assert status == 200 and verify["valid"] is True
