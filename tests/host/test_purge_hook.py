"""The purging process tells each plugin of a purge once, before it answers (it told them twice: once from the
purge route, once more when its own registry copy saw the tenant gone)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libervia import hookimpl
from libervia.gateway import Gateway
from libervia.testing.gateway import GatewayHarness


class PurgeCounter:
    def __init__(self) -> None:
        self.purged: list[str] = []

    @hookimpl
    def libervia_tenant_purged(self, gateway: Gateway, tenant_id: str) -> None:
        self.purged.append(tenant_id)


async def test_a_purge_tells_each_plugin_once_before_it_answers(tmp_path: Path) -> None:
    counter = PurgeCounter()
    async with GatewayHarness(tmp_path / "data", {}, [counter]) as gateway:
        await gateway.create_tenant("gone-one")
        assert (await gateway.admin.delete("/admin/tenants/gone-one")).status == 200
        response = await gateway.admin.post("/admin/tenants/gone-one/purge")
        assert response.status == 200, await response.text()
        assert counter.purged == ["gone-one"]
        await asyncio.sleep(0.2)   # any listener still to run would have run
        assert counter.purged == ["gone-one"]
