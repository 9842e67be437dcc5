"""Two gateway processes with separate BASE_DIRs (two machines) sharing one PostgreSQL schema.

What is created, revoked or appended through one is what the other serves: one tenant registry, and one hash chain
per tenant even when both processes append to it at the same time.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import postgres_test_dsn
from tests.gateway_process import GatewayProcess
from tests.storage_postgres.conftest import drop_schema, postgres_env

pytestmark = pytest.mark.postgres

# How long a change made through one gateway may take to reach the other: the registry is polled every
# registry_refresh_s (0.25 s by default), and API.md promises a revoked key stops working on every process.
PROPAGATION_S = 1.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateways on one schema of this module's own (tests use distinct tenant ids), dropped at the end."""
    dsn = postgres_test_dsn()
    schema = f"test_{secrets.token_hex(6)}"
    env = postgres_env(dsn, schema)
    gateways = [GatewayProcess(tmp_path_factory.mktemp(machine) / "data", env) for machine in ("a", "b")]
    try:
        for gateway in gateways:
            gateway.start()
        yield gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            gateway.kill()
        asyncio.run(drop_schema(dsn, schema))


async def eventually_status(gateway: GatewayProcess, path: str, token: str, expected: int) -> int:
    """Poll ``path`` until it answers ``expected`` or PROPAGATION_S has passed; the last status seen."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        status, _, _ = await gateway.request("GET", path, token)
        if status == expected or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def test_both_gateways_report_their_postgres_storage_ready(
        pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    for gateway in pair:
        status, _, body = await gateway.request("GET", "/health/ready")
        assert status == 200, body
        assert body["checks"]["storage"]["ok"] is True and "PostgreSQL" in body["checks"]["storage"]["detail"]


async def test_a_tenant_created_on_one_gateway_is_served_by_the_other(
        pair: tuple[GatewayProcess, GatewayProcess], unique_id: Callable[[str], str]) -> None:
    a, b = pair
    tenant = unique_id("acme")
    await a.create_tenant(tenant, name="Acme")
    assert await eventually_status(b, f"/admin/tenants/{tenant}", b.admin_token, 200) == 200
    status, _, body = await b.request("GET", f"/admin/tenants/{tenant}", b.admin_token)
    assert status == 200 and body["name"] == "Acme"


async def test_a_key_revoked_on_one_gateway_is_refused_by_the_other(
        pair: tuple[GatewayProcess, GatewayProcess], unique_id: Callable[[str], str]) -> None:
    a, b = pair
    tenant = unique_id("acme")
    await a.create_tenant(tenant)
    token = await a.create_key(tenant, "tenant_admin")
    path = f"/admin/tenants/{tenant}/keys"
    assert await eventually_status(b, path, token, 200) == 200
    _, _, keys = await b.request("GET", path, token)
    key_id = keys["keys"][0]["keyId"]
    status, _, body = await a.request("POST", f"{path}/{key_id}/revoke", a.admin_token)
    assert status == 200, body
    assert await eventually_status(b, path, token, 401) == 401


async def test_both_gateways_append_to_one_tenant_log_as_one_chain(
        pair: tuple[GatewayProcess, GatewayProcess], unique_id: Callable[[str], str]) -> None:
    a, b = pair
    tenant = unique_id("acme")
    await a.create_tenant(tenant)
    assert await eventually_status(b, f"/admin/tenants/{tenant}", b.admin_token, 200) == 200

    async def create_keys(gateway: GatewayProcess, count: int) -> list[str]:
        return await asyncio.gather(*(gateway.create_key(tenant, "public") for _ in range(count)))

    made = await asyncio.gather(create_keys(a, 15), create_keys(b, 15))
    assert sum(len(tokens) for tokens in made) == 30
    for gateway in (a, b):
        status, _, events = await gateway.request("GET", f"/admin/tenants/{tenant}/events?limit=100",
                                                  gateway.admin_token)
        assert status == 200, events
        created = [e for e in events["events"] if e["evento"] == "KEY_CREATED"]
        assert len(created) == 30
        assert [e["seq"] for e in events["events"]] == list(range(1, events["total"] + 1))
        status, _, result = await gateway.request("GET", f"/admin/tenants/{tenant}/audit/verify", gateway.admin_token)
        assert status == 200, result
        assert result["valid"] is True and result["totalVerified"] == events["total"]
