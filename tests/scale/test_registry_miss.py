"""A key or tenant created through one gateway process works on every other one at once, without waiting for
the registry poll: a lookup that misses re-reads the shared registry (at most every ``MISS_REFRESH_S``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.gateway_process import GatewayProcess

# The slowest poll the settings allow, so that only the refresh on a miss can explain an immediate success.
SLOW_POLL = {"LIBERVIA_REGISTRY_REFRESH_S": "1"}


async def test_a_key_created_on_one_process_authenticates_on_another_at_once(
        gateway_factory: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    creator, other = gateway_factory(SLOW_POLL, base_dir=shared), gateway_factory(SLOW_POLL, base_dir=shared)
    for round_ in range(5):
        tenant = f"fresh-{round_}"
        await creator.create_tenant(tenant)
        token = await creator.create_key(tenant)
        status, _, body = await other.request("GET", "/api/v1/eventlog/status", token)
        assert status == 200, body
        status, _, body = await other.request("GET", f"/admin/tenants/{tenant}", other.admin_token)
        assert status == 200, body


async def test_an_unknown_token_is_still_refused(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory()
    status, _, body = await gateway.request("GET", "/api/v1/eventlog/status", "x" * 43)
    assert status == 401 and body["code"] == "INVALID_TOKEN"
