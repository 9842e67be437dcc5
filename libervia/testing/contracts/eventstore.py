"""The contract every :class:`libervia.storage.EventStore` must keep (the file store, PostgreSQL, third parties).

Use it by subclassing :class:`EventStoreContract` in a ``test_*.py`` module and providing the fixture
``make_store``: an async callable ``(signer, checkpoint_every) -> EventStore``. Every call must return a *new*
store over the *same* backing data (the same ``BASE_DIR``, the same database), the way a second gateway process
would see it; the fixture closes whatever it built when the test ends.

What the contract asks (DESIGN.md "The event log", ``libervia/storage.py``):

* entries follow the one chain rule (:func:`libervia.eventlog.chain.entry_hash`), checked here against an
  independent stdlib implementation of the documented rule;
* a batch gets consecutive seqs, and is stored whole or not at all (a bad payload stores nothing);
* concurrent appends, from one store or from two stores sharing the data, form one chain with every event;
* ``append(..., expected_seq=N)`` writes only onto a head at exactly ``N`` (batches of one group counted in order),
  else raises :class:`AppendConflictError` and writes nothing, so of two writers validated at one head one wins;
* entries come back exactly as ``append`` returned them, in seq order, with working ranges;
* ids are unique and sort in seq order within one writer;
* snapshots, checkpoints, status, size and close behave as the protocol documents, and close leaves a signed
  checkpoint at the head so that truncation is detectable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from libervia.eventlog.chain import ENTRY_FIELDS, entry_hash
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.verify import verify_full
from libervia.storage import (
    AppendConflictError,
    EventDraft,
    EventStore,
    LogHead,
    Snapshot,
    StorageError,
    TenantEventLog,
)

MakeStore = Callable[[CheckpointSigner, int], Awaitable[EventStore]]

SIGNER = CheckpointSigner(b"contract-test-checkpoint-key-0123456789")
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def draft(n: int, **payload: Any) -> EventDraft:
    return EventDraft("TEST_EVENT", "Thing", f"thing-{n}", {"n": n, **payload}, actor="key_test", request_id=f"r{n}")


def stdlib_hash(entry: dict[str, Any]) -> str:
    """The documented rule, written without any project code (docs/EVENTLOG.md)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256((entry["prev"] or "").encode("ascii") + canonical).hexdigest()


async def all_entries(log: TenantEventLog, from_seq: int = 1, to_seq: int | None = None) -> list[dict[str, Any]]:
    return [entry async for entry in log.entries(from_seq, to_seq)]


def assert_one_chain(entries: list[dict[str, Any]]) -> None:
    prev = None
    for position, entry in enumerate(entries, start=1):
        assert entry["seq"] == position
        assert entry["prev"] == prev
        assert entry["hash"] == entry_hash(entry) == stdlib_hash(entry)
        prev = entry["hash"]


class EventStoreContract:
    pytestmark = pytest.mark.asyncio

    @pytest_asyncio.fixture
    async def store(self, make_store: MakeStore) -> EventStore:
        return await make_store(SIGNER, 1000)

    async def test_an_empty_log_has_no_head_and_no_entries(self, store: EventStore) -> None:
        log = await store.open_log("empty-tenant")
        assert await log.head() == LogHead(0, None, None)
        assert await all_entries(log) == []
        status = log.status()
        assert set(status) == {"enabled", "degraded", "errorCount", "events", "headHash", "lastAppendAt",
                               "quarantined"}
        assert status["events"] == 0 and status["headHash"] is None and status["degraded"] is False

    async def test_a_batch_gets_consecutive_seqs_chained_by_the_documented_rule(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(1), draft(2), draft(3, text="olá ✓ 日本")])
        assert [e["seq"] for e in stored] == [1, 2, 3]
        assert all(tuple(sorted(e)) == tuple(sorted(ENTRY_FIELDS)) for e in stored)
        assert stored[0]["prev"] is None
        assert stored[1]["prev"] == stored[0]["hash"] and stored[2]["prev"] == stored[1]["hash"]
        for entry in stored:
            assert entry["hash"] == stdlib_hash(entry)
            assert entry["tenant"] == "acme" and entry["actor"] == "key_test"
            assert entry["id"].startswith("evt_") and TS.match(entry["ts"])
        assert stored[2]["payload"] == {"n": 3, "text": "olá ✓ 日本"}
        assert stored[0]["request_id"] == "r1" and stored[0]["evento"] == "TEST_EVENT"
        head = await log.head()
        assert (head.seq, head.hash, head.last_append_at) == (3, stored[2]["hash"], stored[2]["ts"])

    async def test_entries_come_back_exactly_as_appended_with_ranges(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = []
        for start in range(0, 3000, 100):
            stored += await log.append([draft(n) for n in range(start, start + 100)])
        assert await all_entries(log) == stored
        assert await all_entries(log, 1500, 1510) == stored[1499:1510]
        assert await all_entries(log, 2990) == stored[2989:]
        assert await all_entries(log, 3001) == []
        assert await all_entries(log, 5, 4) == []

    async def test_an_empty_batch_writes_nothing(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        assert await log.append([]) == []
        assert await log.head() == LogHead(0, None, None)

    async def test_a_batch_with_a_bad_payload_stores_nothing(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        await log.append([draft(1)])
        bad = EventDraft("TEST_EVENT", "Thing", "x", {"not json": object()})
        good = [log.append([draft(n), draft(n + 100)]) for n in range(2, 6)]
        results = await asyncio.gather(log.append([draft(9), bad]), *good, return_exceptions=True)
        assert isinstance(results[0], (TypeError, ValueError))
        assert all(isinstance(r, list) for r in results[1:])
        entries = await all_entries(log)
        assert len(entries) == 1 + 4 * 2
        assert all(e["payload"]["n"] != 9 for e in entries)
        assert_one_chain(entries)

    async def test_concurrent_appends_form_one_chain_and_keep_batches_together(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        results = await asyncio.gather(*[log.append([draft(n, part=0), draft(n, part=1)]) for n in range(100)])
        for batch in results:
            assert batch[1]["seq"] == batch[0]["seq"] + 1
        entries = await all_entries(log)
        assert len(entries) == 200
        assert_one_chain(entries)
        assert sorted(e["payload"]["n"] for e in entries) == sorted(list(range(100)) * 2)
        result = await verify_full(log, await store.checkpoints("acme"), SIGNER)
        assert result["valid"] and result["totalVerified"] == 200

    async def test_ids_are_unique_and_sort_in_seq_order(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        for n in range(50):
            await log.append([draft(n), draft(n)])
        entries = await all_entries(log)
        ids = [e["id"] for e in entries]
        assert len(set(ids)) == len(ids) == 100
        assert ids == sorted(ids)

    async def test_a_second_store_sees_the_same_log(self, make_store: MakeStore, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(n) for n in range(10)])
        other = await make_store(SIGNER, 1000)
        other_log = await other.open_log("acme")
        assert await other_log.head() == await log.head()
        assert await all_entries(other_log) == stored
        more = await other_log.append([draft(99)])
        assert more[0]["seq"] == 11 and more[0]["prev"] == stored[-1]["hash"]
        assert (await log.head()).seq == 11
        assert await all_entries(log, 11) == more

    async def test_two_stores_appending_concurrently_make_one_chain(self, make_store: MakeStore,
                                                                    store: EventStore) -> None:
        other = await make_store(SIGNER, 1000)
        log_a, log_b = await store.open_log("acme"), await other.open_log("acme")

        async def write(log: TenantEventLog, tag: str) -> None:
            await asyncio.gather(*[log.append([draft(n, writer=tag)]) for n in range(60)])

        await asyncio.gather(write(log_a, "a"), write(log_b, "b"))
        entries = await all_entries(log_a)
        assert len(entries) == 120
        assert_one_chain(entries)
        assert sorted((e["payload"]["writer"], e["payload"]["n"]) for e in entries) == sorted(
            [("a", n) for n in range(60)] + [("b", n) for n in range(60)])

    async def test_an_append_at_the_expected_head_is_written(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        first = await log.append([draft(1), draft(2)], expected_seq=0)
        assert [e["seq"] for e in first] == [1, 2]
        second = await log.append([draft(3)], expected_seq=2)
        assert second[0]["seq"] == 3 and second[0]["prev"] == first[-1]["hash"]
        assert await all_entries(log) == first + second

    async def test_an_append_at_a_stale_head_is_refused_and_writes_nothing(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(n) for n in range(3)])
        for stale in (0, 2, 4):
            with pytest.raises(AppendConflictError) as caught:
                await log.append([draft(10), draft(11)], expected_seq=stale)
            assert (caught.value.expected_seq, caught.value.head_seq) == (stale, 3)
        assert await all_entries(log) == stored
        head = await log.head()
        assert (head.seq, head.hash) == (3, stored[-1]["hash"])
        assert log.status()["degraded"] is False and log.status()["errorCount"] == 0
        # A refusal is not a failure of the log: the next append at the real head goes through.
        assert (await log.append([draft(12)], expected_seq=3))[0]["seq"] == 4

    async def test_a_head_moved_by_another_store_is_seen_at_write_time(self, make_store: MakeStore,
                                                                       store: EventStore) -> None:
        log = await store.open_log("acme")
        await log.append([draft(1)])
        assert (await log.head()).seq == 1
        other_log = await (await make_store(SIGNER, 1000)).open_log("acme")
        theirs = await other_log.append([draft(2)])
        with pytest.raises(AppendConflictError) as caught:
            await log.append([draft(3)], expected_seq=1)  # validated at 1, but the other store wrote seq 2
        assert caught.value.head_seq == 2
        assert [e["seq"] for e in await all_entries(other_log)] == [1, 2]
        assert (await log.append([draft(3)], expected_seq=2))[0]["prev"] == theirs[0]["hash"]

    async def test_two_stores_racing_at_one_head_have_exactly_one_winner(self, make_store: MakeStore,
                                                                          store: EventStore) -> None:
        other = await make_store(SIGNER, 1000)
        log_a, log_b = await store.open_log("acme"), await other.open_log("acme")
        await log_a.append([draft(0)])
        for round_ in range(1, 21):
            results = await asyncio.gather(
                log_a.append([draft(round_, writer="a"), draft(round_, writer="a")], expected_seq=round_ * 2 - 1),
                log_b.append([draft(round_, writer="b"), draft(round_, writer="b")], expected_seq=round_ * 2 - 1),
                return_exceptions=True)
            won = [r for r in results if isinstance(r, list)]
            lost = [r for r in results if isinstance(r, AppendConflictError)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].head_seq == round_ * 2 + 1 and [e["seq"] for e in won[0]] == [round_ * 2, round_ * 2 + 1]
            # The loser catches up (here: does nothing) and the next round starts from the winner's head.
        entries = await all_entries(log_b)
        assert len(entries) == 41
        assert_one_chain(entries)
        for pair in range(1, 41, 2):
            assert entries[pair]["payload"] == entries[pair + 1]["payload"]  # no batch was split or mixed

    async def test_a_group_checks_each_batch_against_the_batches_before_it(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        await log.append([draft(0)])
        # Queued in one event-loop turn, these can share one group write: each expectation counts the batches
        # queued (and written) before it, and a refused batch moves nobody's head.
        results = await asyncio.gather(
            log.append([draft(1), draft(1)], expected_seq=1),   # 2, 3
            log.append([draft(2)]),                              # 4 (no expectation)
            log.append([draft(3)], expected_seq=1),              # stale: the head is 4 by now
            log.append([draft(4)], expected_seq=4),              # 5
            log.append([draft(5), draft(5)], expected_seq=5),    # 6, 7
            log.append([draft(6)], expected_seq=9),              # ahead of the head: refused too
            log.append([draft(7)], expected_seq=7),              # 8
            return_exceptions=True)
        seqs = [[e["seq"] for e in r] if isinstance(r, list)
                else (r.expected_seq, r.head_seq) if isinstance(r, AppendConflictError) else r for r in results]
        assert seqs == [[2, 3], [4], (1, 4), [5], [6, 7], (9, 7), [8]]
        assert all(isinstance(results[i], AppendConflictError) for i in (2, 5))
        entries = await all_entries(log)
        assert [e["payload"]["n"] for e in entries] == [0, 1, 1, 2, 4, 5, 5, 7]
        assert_one_chain(entries)

    async def test_tenants_are_isolated_and_listed(self, store: EventStore) -> None:
        acme, globex = await store.open_log("acme"), await store.open_log("globex")
        await acme.append([draft(1)])
        await globex.append([draft(2), draft(3)])
        assert [e["payload"]["n"] for e in await all_entries(acme)] == [1]
        assert [e["tenant"] for e in await all_entries(globex)] == ["globex", "globex"]
        assert {"acme", "globex"} <= set(await store.tenant_ids())

    async def test_size_grows_with_appends(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        before = await log.size_bytes()
        await log.append([draft(1, text="x" * 1000)])
        assert await log.size_bytes() >= before + 1000

    async def test_status_reports_the_head(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(1), draft(2)])
        status = log.status()
        assert status["enabled"] is True
        assert status["events"] == 2 and status["headHash"] == stored[-1]["hash"]
        assert status["lastAppendAt"] == stored[-1]["ts"]
        assert status["errorCount"] == 0 and status["quarantined"] == 0

    async def test_snapshots_round_trip_and_the_newest_wins(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        assert await log.load_snapshot() is None
        stored = await log.append([draft(n) for n in range(5)])
        await log.save_snapshot(Snapshot(seq=2, hash=stored[1]["hash"], state=b"state-at-2"))
        assert await log.load_snapshot() == Snapshot(2, stored[1]["hash"], b"state-at-2")
        await log.save_snapshot(Snapshot(seq=5, hash=stored[4]["hash"], state=b"\x00binary\xff"))
        assert await log.load_snapshot() == Snapshot(5, stored[4]["hash"], b"\x00binary\xff")

    async def test_a_snapshot_that_does_not_match_the_log_is_refused(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        await log.append([draft(1), draft(2)])
        with pytest.raises(ValueError, match="does not match"):
            await log.save_snapshot(Snapshot(seq=2, hash="0" * 64, state=b"s"))

    async def test_checkpoints_are_kept_per_tenant(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(1)])
        checkpoint = SIGNER.sign("acme", 1, stored[0]["hash"])
        await store.save_checkpoint(checkpoint)
        assert checkpoint in await store.checkpoints("acme")
        assert await store.checkpoints("globex") == []

    async def test_close_leaves_a_signed_checkpoint_at_the_head(self, make_store: MakeStore,
                                                                store: EventStore) -> None:
        log = await store.open_log("acme")
        stored = await log.append([draft(n) for n in range(5)])
        await log.close()
        checkpoints = await store.checkpoints("acme")
        newest = max(checkpoints, key=lambda cp: cp.seq)
        assert (newest.seq, newest.hash) == (5, stored[-1]["hash"])
        assert SIGNER.verify(newest)
        reopened = await (await make_store(SIGNER, 1000)).open_log("acme")
        result = await verify_full(reopened, checkpoints, SIGNER)
        assert result["valid"] and result["checkpoint"]["seq"] == 5

    async def test_a_checkpoint_is_signed_every_n_events(self, make_store: MakeStore) -> None:
        store = await make_store(SIGNER, 10)
        log = await store.open_log("acme")
        for n in range(25):
            await log.append([draft(n)])
        seqs = sorted(cp.seq for cp in await store.checkpoints("acme"))
        assert seqs == [10, 20]

    async def test_append_after_close_fails(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        await log.append([draft(1)])
        await log.close()
        with pytest.raises(StorageError):
            await log.append([draft(2)])

    async def test_reopening_after_close_continues_the_chain(self, store: EventStore) -> None:
        log = await store.open_log("acme")
        first = await log.append([draft(1)])
        await log.close()
        log = await store.open_log("acme")
        second = await log.append([draft(2)])
        assert second[0]["seq"] == 2 and second[0]["prev"] == first[0]["hash"]
