"""Memory bounded by live state: records beyond the last flush live in the record index, and every read answers
as it did when everything was in memory (issue 11.5)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from libervia.core import TenantCore
from libervia.core import core as core_module
from libervia.core import records as records_module
from libervia.core.command_kit import Batch, Outcome
from libervia.core.commands import Commands
from libervia.core.model import Entity, EventType
from libervia.core.record_index import RecordIndex
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.storage import CorruptStoreError, StorageError
from libervia_plugins.storage_files.eventlog import FileEventStore
from tests.core import bodies
from tests.core.conftest import SIGNER_KEY, CoreHarness, decided, mandate_for
from tests.core.test_domain_restart import _mid_life
from tests.held_calls import hold


async def _every_read(core: TenantCore) -> dict[str, Any]:
    """What each read route of the Core answers, for every record it knows."""
    episodes = [e.id for e in core.state.episodios.values()]
    mandates = await core.mandates()
    reviews = await core.reviews()
    consequences = await core.consequences()
    return {
        "dashboard": await core.dashboard(),
        "summary": await core.summary(),
        "episodes": [await core.episode(e) for e in episodes],
        "mandates": mandates,
        "mandatesActive": await core.mandates(status="active"),
        "mandatesOfA2": await core.mandates(agent_id="a2"),
        "mandate": [await core.mandate(m["id"]) for m in mandates],
        "reviews": reviews,
        "reviewsOpen": await core.reviews(status="OPEN"),
        "review": [await core.review(r["id"]) for r in reviews],
        "consequences": consequences,
        "consequence": [await core.consequence(c["id"]) for c in consequences],
        "events": await core.events(limit=500),
    }


async def test_resident_records_stay_bounded_while_history_grows(harness: CoreHarness,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 40)
    monkeypatch.setattr(records_module, "RECENT_CAPACITY", 4)
    core = await harness.open()
    answers = [await decided(core) for _ in range(60)]   # 300 records, 600 events
    assert core.state.resident_count <= 40 + 10 + 8 * 4
    assert core.counters["snapshots"] >= 5
    # The oldest ones are read back from the index exactly as they were answered.
    first = answers[0]
    episode = await core.episode(first["episodio_id"])
    assert episode["contrato_id"] == first["contrato"]["id"] and episode["estado"] == "DECIDIDO"
    assert core.state.contratos[first["contrato"]["id"]].to_api() == first["contrato"]
    # And commands about old records validate against them.
    recorded = await core.record_consequence(bodies.consequencia(first["contrato"]["id"]), actor="k")
    assert recorded["observacao"]["contrato_id"] == first["contrato"]["id"]


async def test_every_read_answers_the_same_from_the_index_as_from_memory(harness: CoreHarness,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 1)   # flush after every command that changes a record
    monkeypatch.setattr(records_module, "RECENT_CAPACITY", 1)
    core = await harness.open()
    await _mid_life(core)
    from_index = await _every_read(core)
    assert core.counters["snapshots"] > 10
    # The same log folded with everything in memory, as the Core did before the index.
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 10**9)
    await core.close()
    shutil.rmtree(harness.index_dir(core.tenant_id))
    in_memory = await harness.restart(core)
    assert in_memory.counters["snapshots"] == 0 and in_memory.state.changed_count > 20
    assert await _every_read(in_memory) == from_index


async def test_a_log_replaced_by_an_older_copy_rebuilds_the_index(harness: CoreHarness) -> None:
    """A restore brings back a shorter log: the index, flushed further on, must not lend it records."""
    core = await harness.open(snapshot_every=5)
    kept = await decided(core)
    await core.close()
    await core.log.close()
    tenant_dir = harness.base_dir / "tenants" / core.tenant_id
    backup = harness.base_dir.parent / "backup"
    shutil.copytree(tenant_dir, backup)
    core = await harness.restart(core, snapshot_every=5)
    lost = await decided(core)
    await core.observe(kept["episodio_id"], actor="k")    # changes a record the old copy also holds
    await core.close()
    await core.log.close()
    shutil.rmtree(tenant_dir)
    shutil.copytree(backup, tenant_dir)

    restored = await harness.restart(core, snapshot_every=5)
    assert restored.state.seq == 10 and restored.replayed_from_snapshot is None
    assert (await restored.episode(kept["episodio_id"]))["estado"] == "DECIDIDO"
    assert lost["episodio_id"] not in restored.state.episodios
    # New history on the restored log, then a restart from its own index: still only what this log says.
    await decided(restored)
    again = await harness.restart(restored, snapshot_every=5)
    assert (await again.episode(kept["episodio_id"]))["estado"] == "DECIDIDO"
    assert lost["episodio_id"] not in again.state.episodios


async def test_two_processes_share_one_index_file(harness: CoreHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Cores over one log and one index directory, as two workers of one machine: each flushes what it
    folded, and neither ever reads a record version newer than its own state."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 5)
    monkeypatch.setattr(records_module, "RECENT_CAPACITY", 1)
    first = await harness.open()
    other_store = FileEventStore(harness.base_dir, CheckpointSigner(SIGNER_KEY))   # another process's store
    second_log = await other_store.open_log(first.tenant_id)
    second = TenantCore(first.tenant_id, second_log, first.policies, index_dir=harness.index_dir(first.tenant_id))
    await second.start()
    decisions = []
    for round_ in range(6):
        writer = first if round_ % 2 == 0 else second
        decisions.append(await decided(writer))
        if round_ == 3:
            await writer.observe(decisions[0]["episodio_id"], actor="k")
    for core in (first, second):
        for answer in decisions:
            episode = await core.episode(answer["episodio_id"])
            assert episode["contrato_id"] == answer["contrato"]["id"]
        assert (await core.episode(decisions[0]["episodio_id"]))["estado"] == "EM_OBSERVACAO"
    assert (await first.dashboard()) == (await second.dashboard())
    await second.close()
    await other_store.close()


async def test_a_discarded_core_lets_a_running_read_finish(harness: CoreHarness) -> None:
    """A purge discards the instance while a read holds its lock: the read finishes on an open index."""
    core = await harness.open()
    answer = await decided(core)
    read = asyncio.ensure_future(core.episode(answer["episodio_id"]))
    await asyncio.sleep(0)
    core.discard()
    assert (await read)["episodio_id"] == answer["episodio_id"]


async def test_an_entry_the_projection_cannot_apply_is_never_written(core: TenantCore) -> None:
    """Folded before it is queued (it was queued first: the client got a 503 for a write that was durable)."""
    await decided(core)
    head = await core.log.head()

    def impossible(commands: Commands, now: datetime) -> Outcome:
        batch = Batch(actor="k", request_id=None)
        batch.add(EventType.SITUACAO_STATUS_ALTERADO, Entity.SITUATION, "sit_missing",
                  {"situacao_id": "sit_missing", "para": "ABERTA", "em": "2026-01-01T00:00:00Z"})
        return Outcome(batch.drafts, lambda _state: {})

    with pytest.raises(CorruptStoreError):
        await core.run(impossible)
    assert (await core.log.head()).seq == head.seq
    await decided(core)   # the projection was rebuilt and goes on from the durable head
    assert core.state.seq == head.seq + 10 == (await core.log.head()).seq


async def test_concurrent_commands_flush_once_per_threshold(harness: CoreHarness,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every caller waiting for the lock used to flush again after the first had (an empty or tiny flush each)."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 50)
    core = await harness.open(snapshot_every=10**9)

    async def caller() -> None:
        for _ in range(10):
            await decided(core)

    await asyncio.gather(*(caller() for _ in range(16)))   # 160 decisions, 800 records
    assert 800 // (50 + 5 * 16) <= core.counters["snapshots"] <= 800 // 50


async def test_two_processes_agree_on_a_mandate_history(harness: CoreHarness) -> None:
    """One process flushes history entries the other has folded but not flushed yet: each entry is answered
    once (the other's answer listed them twice)."""
    first = await harness.open(snapshot_every=1)    # flushes after every command
    other_store = FileEventStore(harness.base_dir, CheckpointSigner(SIGNER_KEY))
    granted = await mandate_for(first, "a1")
    second = TenantCore(first.tenant_id, await other_store.open_log(first.tenant_id), first.policies,
                        index_dir=harness.index_dir(first.tenant_id), snapshot_every=10**9)
    await second.start()
    for _ in range(3):
        await first.evaluate_autonomy(bodies.avaliacao("a1"), actor="k")
    answers = [await core.mandate(granted["id"]) for core in (first, second)]
    assert answers[0] == answers[1]
    seqs = [item["seq"] for item in answers[0]["history"]]
    assert len(seqs) == len(set(seqs)) == 4   # granted, then three checks
    await second.close()
    await other_store.close()


async def test_an_id_that_is_not_text_names_no_record(core: TenantCore) -> None:
    """A lookup by an unhashable id (a JSON object where an id belongs) answers "none", not a TypeError (a 500)."""
    await decided(core)
    assert core.state.contratos.get({"id": 1}) is None  # type: ignore[arg-type]
    assert [1] not in core.state.episodios


async def test_an_index_file_gone_while_let_go_is_never_read_as_empty(harness: CoreHarness,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle Core lets its index file go; if the file is removed meanwhile (another process's rebuild), the
    next read re-created it empty and answered 404 for an episode that exists, and a restart trusted that file."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 5)
    monkeypatch.setattr(records_module, "RECENT_CAPACITY", 1)
    core = await harness.open()
    answers = [await decided(core) for _ in range(4)]
    first = answers[0]["episodio_id"]
    await core.release_idle()
    for path in harness.index_dir(core.tenant_id).glob("*.sqlite*"):
        path.unlink()
    with pytest.raises(StorageError):   # unavailable, never "does not exist"
        await core.episode(first)
    restarted = await harness.restart(core)
    assert (await restarted.episode(first))["estado"] == "DECIDIDO"


async def test_a_command_whose_append_is_refused_before_it_is_queued_leaves_no_trace(
        core: TenantCore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entries were folded into the state before the store refused to queue them (a log closing): the state
    kept them, and the next command found the log 'truncated' (a 5xx for good)."""
    first = await decided(core)
    real = core._log.append_chained

    def refusing(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("the event log is closed")

    monkeypatch.setattr(core._log, "append_chained", refusing)
    with pytest.raises(StorageError):
        await core.decide(bodies.decisao(), actor="k")
    monkeypatch.setattr(core._log, "append_chained", real)
    second = await decided(core)
    assert (await core.episode(first["episodio_id"]))["estado"] == "DECIDIDO"
    assert core.state.seq == 2 * second["metadados"]["eventos"]   # two decisions, nothing of the refused one


def _open_index_files(core: TenantCore, harness: CoreHarness) -> list[str]:
    """The tenant's index files this process holds open (its descriptors, as the kernel lists them)."""
    index_dir = str(harness.index_dir(core.tenant_id))
    fd_dir = Path("/proc/self/fd")
    targets = []
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    return [target for target in targets if target.startswith(index_dir) and ".sqlite" in target]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc to list open descriptors")
async def test_a_core_lets_its_index_file_go_once_loaded(harness: CoreHarness) -> None:
    """Most instances go idle after their first request: each open SQLite file costs about 165 KB, and with
    them kept open 1,000 tenants with one decision each took 255 MB instead of 111 MB (issue 11's memory target
    is 150 MB). A read opens the file again."""
    core = await harness.open()
    first = (await decided(core))["episodio_id"]
    restarted = await harness.restart(core)
    assert _open_index_files(restarted, harness) == []
    assert (await restarted.episode(first))["estado"] == "DECIDIDO"


async def test_an_index_file_is_let_go_off_the_event_loop(harness: CoreHarness,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing an index file checkpoints its write-ahead log, an fsync (0.4 ms each here): released on the event
    loop, a sweep over a thousand idle tenants held every request for 0.4 s."""
    closed_on: list[threading.Thread] = []
    close = RecordIndex.close

    def close_and_note(index: RecordIndex) -> None:
        if index.holds_file:
            closed_on.append(threading.current_thread())
        close(index)

    monkeypatch.setattr(RecordIndex, "close", close_and_note)
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 2)
    core = await harness.open()
    for _ in range(3):
        await decided(core)   # flushes: the index file is open
    await core.release_idle()
    restarted = await harness.restart(core)   # loads from the index, then lets it go
    assert len(closed_on) >= 2
    assert threading.main_thread() not in closed_on
    assert (await restarted.mandates()) is not None


async def test_a_cancelled_release_holds_the_lock_until_its_thread_is_done(harness: CoreHarness,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep cancelled (at shutdown) while a worker thread was closing the index file let the Core's lock go at
    once: the next call, the final flush, then used the connection the thread was closing."""
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 2)
    core = await harness.open()
    for _ in range(3):
        await decided(core)   # flushes: the index file is open
    held = hold(monkeypatch, RecordIndex, "release")
    sweep = asyncio.create_task(core.release_idle())
    assert await asyncio.to_thread(held.entered.wait, 10)
    sweep.cancel()
    read = asyncio.create_task(core.mandates())   # a call: it needs the lock
    await asyncio.sleep(0.2)   # time enough for the read to finish, were the lock free
    assert not read.done()
    held.release.set()
    with pytest.raises(asyncio.CancelledError):
        await sweep
    assert isinstance(await read, list | dict)
