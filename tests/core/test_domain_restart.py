"""The state is what the log says: restarting a Core (full replay, or snapshot plus tail) gives the same state."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from libervia.core import TenantCore
from libervia.errors import ApiError
from tests.core import bodies
from tests.core.conftest import CoreHarness, decided, mandate_for


async def _mid_life(core: TenantCore) -> None:
    """A tenant with every kind of record: decided, observed, closed, rejected episodes, mandates, reviews."""
    first = await decided(core)
    await core.observe(first["episodio_id"], actor="k")
    second = await decided(core)
    await core.observe(second["episodio_id"], actor="k")
    await core.close_episode(second["episodio_id"], actor="k")
    with pytest.raises(ApiError):
        await core.decide(bodies.decisao(limites_definidos=[]), actor="k")
    suspended = await mandate_for(core, "a1")
    degraded = await mandate_for(core, "a2")
    await mandate_for(core, "a3", maxUses=1)
    await core.evaluate_autonomy(bodies.avaliacao("a3", consumir=True), actor="k")
    for agent, triggers in (("a1", {"severidade": "MEDIA", "violou_limites": True}),
                            ("a2", {"severidade": "ALTA", "perda_relevante": True}),
                            ("a2", {"severidade": "ALTA", "categoria": "ETICA"})):
        await core.record_consequence(bodies.consequencia(first["contrato"]["id"], agentId=agent,
                                                          autonomyTriggers=triggers), actor="k")
    review_id = next(r for r in core.state.reviews.values() if r.mandate_id == suspended["id"]).id
    await core.update_review_notes(review_id, "em análise", actor="key_admin")
    assert core.state.mandates[degraded["id"]].modo == "VIVENCIA_ASSISTIDA"


async def test_restart_without_an_index_rebuilds_identical_state(harness: CoreHarness) -> None:
    core = await harness.open()
    await _mid_life(core)
    before, dashboard = core._projection.to_bytes(), await core.dashboard()
    await core.close()
    shutil.rmtree(harness.index_dir(core.tenant_id))
    restarted = await harness.restart(core)
    assert restarted.replayed_from_snapshot is None and restarted.replayed_events == restarted.state.seq
    assert restarted._projection.to_bytes() == before
    assert await restarted.dashboard() == dashboard
    # And it keeps working from there.
    await restarted.decide(bodies.decisao(), actor="k")


async def test_flushed_state_plus_tail_gives_the_same_state(harness: CoreHarness) -> None:
    core = await harness.open(snapshot_every=20)
    await _mid_life(core)
    await core.decide(bodies.decisao(), actor="k")  # a tail after the last flush (the crash loses no log entry)
    assert core.counters["snapshots"] >= 1
    flushed = core.metrics()["snapshotSeq"]
    assert 0 < flushed < core.state.seq
    before = core._projection.to_bytes()
    restarted = await harness.restart(core, crash=True, snapshot_every=20)
    assert restarted.replayed_from_snapshot == flushed
    assert restarted.replayed_events == restarted.state.seq - flushed
    assert restarted._projection.to_bytes() == before


async def test_an_unreadable_index_falls_back_to_a_full_replay(harness: CoreHarness) -> None:
    core = await harness.open(snapshot_every=100000)
    await _mid_life(core)
    before = core._projection.to_bytes()
    head = await core.log.head()
    await core.close()
    for path in harness.index_dir(core.tenant_id).iterdir():
        path.write_bytes(b"not an index " * 512)
    restarted = await harness.restart(core, snapshot_every=100000)
    assert restarted.replayed_from_snapshot is None and restarted.replayed_events == head.seq
    assert restarted._projection.to_bytes() == before


async def test_concurrent_commands_never_interleave(core: TenantCore) -> None:
    await mandate_for(core, maxUses=5)
    results = await asyncio.gather(*(core.evaluate_autonomy(bodies.avaliacao(consumir=True), actor="k")
                                     for _ in range(12)))
    allowed = [r for r in results if r["permitido"]]
    assert len(allowed) == 5 and sorted(r["uses"] for r in allowed) == [1, 2, 3, 4, 5]
    assert {r["regra"] for r in results if not r["permitido"]} == {"MANDATE_EXHAUSTED_USES"}


async def test_event_quota_refuses_writes_past_it(harness: CoreHarness) -> None:
    core = await harness.open(quotas={"maxEvents": 12, "maxStorageMB": 0})
    await decided(core)  # 10 events
    with pytest.raises(ApiError) as caught:
        await decided(core)
    assert caught.value.status == 403 and caught.value.code == "QUOTA_EXCEEDED"
    assert core.state.seq == 10
    await mandate_for(core)  # one more event still fits
