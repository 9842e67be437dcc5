"""A call that loses the race with a purge is answered 404, not run on a fresh instance under the gone id (it
was retried there: the command landed in the purged tenant's log, or in a new one created for nobody)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from libervia.core import TenantCore, TenantPolicies
from libervia.core import core as core_module
from libervia.core.record_index import RecordIndex
from libervia.errors import ApiError
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.runtime import RuntimeParts, TenantRuntime
from libervia_plugins.storage_files.eventlog import FileEventStore
from tests.core import bodies
from tests.core.conftest import SIGNER_KEY, default_policies
from tests.held_calls import hold


@pytest.mark.parametrize("recreated", [False, True])
async def test_a_command_waiting_when_its_tenant_is_purged_gets_404(tmp_path: Path, recreated: bool) -> None:
    """Also when the id was created again meanwhile: the call, made for the old tenant, ran on the new one."""
    store = FileEventStore(tmp_path / "data", CheckpointSigner(SIGNER_KEY))
    incarnations = {"acme": "2026-12-01T00:00:00Z"}

    async def policies(tenant_id: str) -> TenantPolicies:
        return default_policies()

    parts = RuntimeParts(events=store, policies=policies, quotas=lambda tenant_id: None,
                         on_append=lambda tenant_id, count: None, incarnation=incarnations.get,
                         uptime_s=lambda: 0.0, tenant_counts=dict, index_root=tmp_path / "record-index")
    runtime = TenantRuntime(parts, idle_ttl_s=600, max_instances=10)
    core = await runtime.core("acme")
    await core.decide(bodies.decisao(), actor="k")

    async def decide(instance: TenantCore) -> object:
        return await instance.decide(bodies.decisao(), actor="k")

    async with core._lock:   # the command waits for the lock, as behind a slow command
        waiting = asyncio.ensure_future(runtime.call("acme", decide))
        await asyncio.sleep(0.01)
        del incarnations["acme"]           # purged through the registry...
        await runtime.discard_tenants(["acme"])   # ...and its instance dropped
        if recreated:
            incarnations["acme"] = "2026-12-01T00:05:00Z"
    with pytest.raises(ApiError) as caught:
        await waiting
    assert (caught.value.status, caught.value.code) == (404, "TENANT_NOT_FOUND")
    log = await store.open_log("acme")
    assert (await log.head()).seq == 10   # only the first decision
    await runtime.close()
    await store.close()


def _sweeping_runtime(tmp_path: Path, idle_ttl_s: float) -> tuple[FileEventStore, TenantRuntime]:
    """A runtime over a file store whose sweep looks every 50 ms (started by the caller)."""
    store = FileEventStore(tmp_path / "data", CheckpointSigner(SIGNER_KEY))

    async def policies(tenant_id: str) -> TenantPolicies:
        return default_policies()

    parts = RuntimeParts(events=store, policies=policies, quotas=lambda tenant_id: None,
                         on_append=lambda tenant_id, count: None, incarnation=lambda tenant_id: None,
                         uptime_s=lambda: 0.0, tenant_counts=dict, index_root=tmp_path / "record-index")
    return store, TenantRuntime(parts, idle_ttl_s=idle_ttl_s, max_instances=10, sweep_interval_s=0.05)


async def test_the_idle_sweep_outlives_a_release_that_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Letting an idle tenant's index file go ran outside the sweep's error handling: one failure ended the
    sweeper task, and no idle tenant was evicted again for the life of the process."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 2)
    store, runtime = _sweeping_runtime(tmp_path, idle_ttl_s=0.3)
    await runtime.start()
    core = await runtime.core("acme")
    for _ in range(3):
        await core.decide(bodies.decisao(), actor="k")   # flushes: the index file is open
    failures = []
    release = RecordIndex.release

    def fail_once(index: RecordIndex) -> None:
        if not failures:
            failures.append("failed")
            raise RuntimeError("cannot schedule new futures after shutdown")
        release(index)

    monkeypatch.setattr(RecordIndex, "release", fail_once)
    for _ in range(200):   # up to 10 s for the tenant to go idle and be evicted
        if runtime.running("acme") is None:
            break
        await asyncio.sleep(0.05)
    assert failures == ["failed"]
    assert runtime.running("acme") is None
    await runtime.close()
    await store.close()


async def test_the_idle_sweep_never_evicts_an_instance_that_replaced_the_one_it_looked_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the sweep waited for an idle tenant's index file to be let go, the tenant was purged and started
    again; the sweep then evicted the new instance, judging it by the old one's idleness."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 2)
    store, runtime = _sweeping_runtime(tmp_path, idle_ttl_s=1.0)
    core = await runtime.core("acme")
    for _ in range(3):
        await core.decide(bodies.decisao(), actor="k")   # flushes: the index file is open
    await asyncio.sleep(1.2)   # idle past its time to live before the sweeper first looks
    held = hold(monkeypatch, RecordIndex, "release", first_only=True)
    await runtime.start()
    assert await asyncio.to_thread(held.entered.wait, 10)   # the sweep is letting the old index go
    await runtime.discard_tenants(["acme"])
    replacement = await runtime.core("acme")
    held.release.set()
    await asyncio.sleep(0.1)   # the sweep goes on with the old slot
    assert runtime.running("acme") is replacement
    assert not replacement.closed
    await runtime.close()
    await store.close()
