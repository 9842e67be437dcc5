"""The contract of a storage plugin seen from the whole gateway: tenants, keys and events survive a restart.

The protocol-level suites (``registry``, ``eventstore``) drive the stores directly; this one runs the real
gateway on your storage plugin, the way an operator meets it. Subclass :class:`StorageGatewayContract` and
override ``contract_settings`` (``{"storage": "<your plugin>", "plugin": {"<your plugin>": {...}}}``) and, if
your plugin is not installed, ``contract_plugins``. Every gateway of one test shares ``BASE_DIR`` and the settings,
so they see the same data, like two consecutive processes of one deployment.

What it checks, each across a stop and a start:

* a tenant created through the admin API is still there, with its fields;
* its keys still authenticate, and a revoked key stays revoked;
* the events written through the Core are all there, and the tenant's chain verifies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest_asyncio

from libervia.testing.contracts.harness import GatewayContract
from libervia.testing.gateway import GatewayHarness, TenantAccess

StartGateway = Callable[[], Awaitable[GatewayHarness]]

MANDATE = {"agentId": "agente-1", "modo": "VIVENCIA_AUTONOMA", "politicas_permitidas": ["compras"],
           "perfil_risco_maximo": "MODERADO", "limites": [{"tipo": "FINANCEIRO", "valor": 5000}],
           "requer_humano_se": ["fornecedor novo"]}


class StorageGatewayContract(GatewayContract):
    @pytest_asyncio.fixture
    async def start_gateway(self, tmp_path: Path, contract_settings: Mapping[str, Any],
                            contract_plugins: Sequence[object]) -> AsyncIterator[StartGateway]:
        running: list[GatewayHarness] = []

        async def start() -> GatewayHarness:
            for harness in running:
                await harness.stop()
            harness = GatewayHarness(tmp_path / "storage-contract", contract_settings, contract_plugins)
            running.append(await harness.start())
            return harness

        yield start
        for harness in running:
            await harness.stop()

    async def test_the_configured_storage_is_used(self, start_gateway: StartGateway,
                                                  contract_settings: Mapping[str, Any]) -> None:
        gateway = await start_gateway()
        # The storage the gateway runs on, not the setting it was given: the plugin's own name for what it built.
        assert gateway.gateway.storage.name == contract_settings.get("storage", "storage_files")

    async def test_tenants_survive_a_restart(self, start_gateway: StartGateway) -> None:
        first = await start_gateway()
        await first.create_tenant("survivor", metadata={"region": "sul"})
        second = await start_gateway()
        response = await second.admin.get("/admin/tenants/survivor")
        assert response.status == 200
        tenant = await response.json()
        assert tenant["id"] == "survivor" and tenant["metadata"] == {"region": "sul"}

    async def test_keys_and_revocations_survive_a_restart(self, start_gateway: StartGateway) -> None:
        first = await start_gateway()
        tenant = await first.create_tenant()
        keys = (await (await first.admin.get(f"/admin/tenants/{tenant.tenant_id}/keys")).json())["keys"]
        public_id = next(key["keyId"] for key in keys if key["role"] == "public")
        assert (await first.admin.post(f"/admin/tenants/{tenant.tenant_id}/keys/{public_id}/revoke")).status == 200
        second = await start_gateway()
        admin_key = second.as_role(tenant.tenant_admin.token)
        assert (await admin_key.get(f"/admin/tenants/{tenant.tenant_id}/keys")).status == 200
        assert (await second.as_role(tenant.public.token).get("/api/v1/eventos")).status == 401

    async def test_events_survive_a_restart_and_the_chain_verifies(self, start_gateway: StartGateway) -> None:
        first = await start_gateway()
        tenant = await first.create_tenant()
        for agent in ("agente-1", "agente-2", "agente-3"):
            response = await tenant.tenant_admin.post(f"/admin/tenants/{tenant.tenant_id}/mandates",
                                                      {**MANDATE, "agentId": agent})
            assert response.status == 201, await response.text()
        before = await self.events(first, tenant)
        second = await start_gateway()
        after = await self.events(second, tenant)
        assert after == before and len(after) >= 3
        verified = await second.admin.get(f"/admin/tenants/{tenant.tenant_id}/audit/verify")
        assert verified.status == 200 and (await verified.json())["valid"] is True

    @staticmethod
    async def events(harness: GatewayHarness, tenant: TenantAccess) -> list[dict[str, Any]]:
        response = await harness.admin.get(f"/admin/tenants/{tenant.tenant_id}/events?limit=200")
        assert response.status == 200
        body = await response.json()
        return list(body["events"])
