"""The purging process tells each plugin of a purge once, before it answers (it told them twice: once from the
purge route, once more when its own registry copy saw the tenant gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

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


class FailingForgetter:
    @hookimpl(tryfirst=True)
    def libervia_tenant_purged(self, gateway: Gateway, tenant_id: str) -> None:
        raise RuntimeError("this plugin cannot forget")


async def test_a_plugin_that_fails_to_forget_a_purged_tenant_does_not_keep_the_others_from_it(
        tmp_path: Path) -> None:
    """The first plugin to raise stopped the rest: the telemetry plugin kept the purged tenant's series."""
    counter = PurgeCounter()
    async with GatewayHarness(tmp_path / "data", {}, [FailingForgetter(), counter]) as gateway:
        await gateway.create_tenant("gone-one")
        await gateway.admin.get("/admin/tenants/gone-one")   # a series labelled with the tenant
        assert 'tenant_id="gone-one"' in await (await gateway.admin.get("/internal/metrics")).text()
        assert (await gateway.admin.delete("/admin/tenants/gone-one")).status == 200
        response = await gateway.admin.post("/admin/tenants/gone-one/purge")
        assert response.status == 200, await response.text()
        assert counter.purged == ["gone-one"]
        metrics = await (await gateway.admin.get("/internal/metrics")).text()
        assert 'tenant_id="gone-one"' not in metrics


async def test_a_tenant_created_again_after_a_purge_starts_with_a_whole_rate_limit(tmp_path: Path) -> None:
    """The limiter kept the purged tenant's state under its id: the new tenant was charged its predecessor's
    requests for up to a minute (429 on its first request)."""
    async with GatewayHarness(tmp_path / "data", {}, []) as gateway:
        async def spend_one(tenant: str) -> int:
            access = await gateway.create_tenant(tenant, quotas={"rateLimitRpm": 1})
            return (await access.public.get("/api/v1/eventlog/status")).status

        assert await spend_one("reused") == 200
        assert (await gateway.admin.delete("/admin/tenants/reused")).status == 200
        assert (await gateway.admin.post("/admin/tenants/reused/purge")).status == 200
        assert await spend_one("reused") == 200


class PurgeWrapper:
    """Sees the purge notification as one call, the way a wrapper sees any hook call."""

    def __init__(self) -> None:
        self.saw: list[str] = []

    @hookimpl(wrapper=True)
    def libervia_tenant_purged(self, gateway: Gateway, tenant_id: str) -> Generator[None, Any, Any]:
        try:
            return (yield)
        except RuntimeError as exc:
            self.saw.append(str(exc))
            raise


async def test_with_plugin_tracing_on_a_failing_plugin_still_does_not_keep_the_others_from_a_purge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tracing on, the notification took call_all's path and stopped at the first plugin that raised."""
    monkeypatch.setenv("LIBERVIA_TRACE_PLUGINS", "1")
    counter = PurgeCounter()
    async with GatewayHarness(tmp_path / "data", {}, [FailingForgetter(), counter]) as gateway:
        await gateway.create_tenant("gone-one")
        assert (await gateway.admin.delete("/admin/tenants/gone-one")).status == 200
        response = await gateway.admin.post("/admin/tenants/gone-one/purge")
        assert response.status == 200, await response.text()
        assert counter.purged == ["gone-one"]


async def test_a_wrapper_around_the_purge_hook_sees_the_failure_and_every_plugin_still_hears(
        tmp_path: Path) -> None:
    counter = PurgeCounter()
    wrapper = PurgeWrapper()
    async with GatewayHarness(tmp_path / "data", {}, [FailingForgetter(), counter, wrapper]) as gateway:
        await gateway.create_tenant("gone-one")
        assert (await gateway.admin.delete("/admin/tenants/gone-one")).status == 200
        response = await gateway.admin.post("/admin/tenants/gone-one/purge")
        assert response.status == 200, await response.text()
        assert counter.purged == ["gone-one"]
        assert wrapper.saw == ["this plugin cannot forget"]
