"""The example plugin on the in-process gateway of libervia.testing."""

from __future__ import annotations

from typing import Any

import libervia_hello
import pytest

from libervia.testing import TenantAccess

pytestmark = pytest.mark.asyncio


@pytest.fixture
def libervia_plugins() -> list[object]:
    return [libervia_hello]


@pytest.fixture
def libervia_settings() -> dict[str, Any]:
    return {"plugin": {"hello": {"greeting": "Bom dia", "shout": True}}}


async def test_greets_the_tenant_with_the_configured_greeting(libervia_tenant: TenantAccess) -> None:
    response = await libervia_tenant.public.get("/api/v1/hello")
    assert response.status == 200
    assert await response.json() == {"greeting": f"BOM DIA, {libervia_tenant.tenant_id}".upper(), "role": "public"}


async def test_the_route_is_protected(libervia_tenant: TenantAccess, libervia_anonymous: Any) -> None:
    assert (await libervia_anonymous.get("/api/v1/hello")).status == 401
