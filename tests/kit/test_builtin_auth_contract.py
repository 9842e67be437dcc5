"""The built-in authenticators prove themselves with the kit's contract, as a third-party one would."""

from __future__ import annotations

from typing import Any

import pytest

from libervia.testing import GatewayHarness
from libervia.testing.contracts.authenticate import AuthenticatorContract


class TestAdminToken(AuthenticatorContract):
    @pytest.fixture
    def accepted_credential(self) -> Any:
        async def credential(harness: GatewayHarness) -> tuple[str, dict[str, Any]]:
            return harness.settings.admin_token, {"role": "global_admin", "tenant_id": None}
        return credential


class TestTenantKeys(AuthenticatorContract):
    @pytest.fixture(params=["public", "tenant_admin"])
    def accepted_credential(self, request: pytest.FixtureRequest) -> Any:
        async def credential(harness: GatewayHarness) -> tuple[str, dict[str, Any]]:
            tenant = await harness.create_tenant()
            role = request.param
            token = (tenant.public if role == "public" else tenant.tenant_admin).token
            assert token is not None
            return token, {"role": role, "tenant_id": tenant.tenant_id}
        return credential

    @pytest.fixture
    def rejected_token(self) -> Any:
        async def revoked(harness: GatewayHarness) -> str:
            tenant = await harness.create_tenant()
            keys = (await (await harness.admin.get(f"/admin/tenants/{tenant.tenant_id}/keys")).json())["keys"]
            key_id = next(key["keyId"] for key in keys if key["role"] == "public")
            assert (await harness.admin.post(f"/admin/tenants/{tenant.tenant_id}/keys/{key_id}/revoke")).status == 200
            assert tenant.public.token is not None
            return tenant.public.token
        return revoked
