"""The IP allow-list on an in-process gateway (libervia.testing): the test client connects from 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libervia_ip_allowlist
import pytest

from libervia.errors import StartupError
from libervia.testing import GatewayHarness

pytestmark = pytest.mark.asyncio


@pytest.fixture
def libervia_plugins() -> list[object]:
    return [libervia_ip_allowlist]


@pytest.fixture
def libervia_settings() -> dict[str, Any]:
    return {"plugin": {"ip_allowlist": {"tenants": {
        "far": ["10.0.0.0/8", "2001:db8::/32"],
        "near": ["192.0.2.0/24", "127.0.0.0/8"],
        "exact": ["127.0.0.1"],
    }}}}


async def test_a_tenant_outside_its_networks_is_refused(libervia_gateway: GatewayHarness) -> None:
    far = await libervia_gateway.create_tenant("far")
    for client in (far.public, far.tenant_admin):
        response = await client.get("/api/v1/eventos")
        assert response.status == 403
        assert (await response.json())["code"] == "ADDRESS_NOT_ALLOWED"
    assert (await far.tenant_admin.get("/admin/tenants/far/keys")).status == 403


async def test_inside_its_networks_or_unlisted_is_served(libervia_gateway: GatewayHarness) -> None:
    for tenant_id in ("near", "exact", "unlisted"):
        tenant = await libervia_gateway.create_tenant(tenant_id)
        assert (await tenant.public.get("/api/v1/eventos")).status == 200, tenant_id


async def test_the_global_admin_is_never_restricted(libervia_gateway: GatewayHarness) -> None:
    await libervia_gateway.create_tenant("far")
    assert (await libervia_gateway.admin.get("/admin/tenants/far")).status == 200


async def test_refusals_count_as_auth_failures(libervia_gateway: GatewayHarness) -> None:
    far = await libervia_gateway.create_tenant("far")
    assert (await far.public.get("/api/v1/eventos")).status == 403
    metrics = await libervia_gateway.admin.get("/internal/metrics")
    assert 'reason="ADDRESS_NOT_ALLOWED"' in await metrics.text()


async def test_default_applies_to_unlisted_tenants(make_libervia_gateway: Any) -> None:
    gateway = await make_libervia_gateway({"plugin": {"ip_allowlist": {"default": ["10.0.0.0/8"],
                                                                       "tenants": {"home": ["127.0.0.1/32"]}}}},
                                          plugins=[libervia_ip_allowlist])
    other, home = await gateway.create_tenant("other"), await gateway.create_tenant("home")
    assert (await other.public.get("/api/v1/eventos")).status == 403
    assert (await home.public.get("/api/v1/eventos")).status == 200


async def test_bad_networks_stop_startup_naming_them(tmp_path: Path) -> None:
    harness = GatewayHarness(tmp_path, {"plugin": {"ip_allowlist": {"tenants": {"acme": ["10.0.0.0/33", "nope"]}}}},
                             plugins=[libervia_ip_allowlist])
    with pytest.raises(StartupError) as refused:
        await harness.start()
    await harness.stop()
    assert refused.value.problems == [
        "plugin.ip_allowlist.tenants.acme: '10.0.0.0/33' is not a network (CIDR) or an address",
        "plugin.ip_allowlist.tenants.acme: 'nope' is not a network (CIDR) or an address",
    ]


async def test_addresses_are_matched_by_family_and_mapped_ipv4() -> None:
    allow = libervia_ip_allowlist.from_config({"tenants": {"a": ["10.1.0.0/16", "2001:db8::/32"]}, "default": None})
    assert allow.allows("a", "10.1.2.3") and allow.allows("a", "::ffff:10.1.2.3") and allow.allows("a", "2001:db8::1")
    assert not allow.allows("a", "10.2.0.1") and not allow.allows("a", "unknown") and not allow.allows("a", None)
    assert allow.allows("b", "203.0.113.9")
