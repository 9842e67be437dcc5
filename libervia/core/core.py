"""``TenantCore``: one tenant's Core, an event-sourced state over its hash-chained log.

Every command is validated under the tenant's lock: catch up with entries other writers appended (when none of
ours is in flight), validate against the state, check the quotas, chain all of the command's events on the
state's head, fold them into the projection and queue them as one atomic append. The lock is released before the
write, so the tenant's next commands validate against a state that includes them and their appends share the next
fsync (group commit); each command answers only once its own entries are durable. A command that fails validation
writes nothing; one chained on entries that were not stored is refused by the store and validated again.

The lock only orders this process. Another gateway process sharing the tenant's store can append between our
catch-up and our append, so the append says which head it was validated at (``expected_seq``); the store refuses
it if the head moved, and the command is caught up and validated again, a few times at most, before the client
gets 409 ``CONCURRENT_UPDATE``. Two processes therefore never both spend a mandate's last use.

Memory holds live state only: the records changed since the last flush, a few recently read ones, and the compact
part of the state (see :mod:`libervia.core.projection`). Every ``FLUSH_RECORDS`` changed records, or every
``snapshot_every`` events, the Core waits for its appends in flight and writes what changed to the tenant's
record index (:mod:`libervia.core.record_index`); a restart loads the newest flushed state that matches the log
and folds in the tail, as it once did from a snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from libervia.clock import now_iso
from libervia.core.commands import COMMANDS, CommandMethod, Commands, Outcome
from libervia.core.model import EventType, MandateStatus, ReviewStatus
from libervia.core.policy import TenantPolicies
from libervia.core.projection import CoreState, Projection, event_summary
from libervia.core.record_index import IndexUnusableError, RecordIndex, StateRow
from libervia.core.records import RecordMap
from libervia.errors import ApiError, quota_exceeded
from libervia.eventlog.chain import chain_drafts
from libervia.storage import (
    AppendConflictError,
    CorruptStoreError,
    LogHead,
    QuotaExceededError,
    StorageError,
    TenantEventLog,
)

Quotas = Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None
QuotaSource = Callable[[], Quotas]
Command = Callable[[Commands, datetime], Outcome]

# How often, and for how long, a command is validated again after another process appended first. Each retry
# starts from a state that includes the winner's events, so only a tenant written continuously by other processes
# runs out. A count alone is not enough: while other workers have a backlog for one hot tenant they append back to
# back and a loser can miss every window for as long as the backlog lasts (5 attempts gave 16 clients over 2
# workers a 409 every ~60 commands; 32 attempts, or 2 s of them, still gave 300 concurrent decisions over 3
# gateways on 2 cores one). So retries go on for at least APPEND_ATTEMPTS and until APPEND_RETRY_BUDGET_S has
# passed, which outlasts an ordinary backlog; a 409 is then what a tenant written without pause gets.
APPEND_ATTEMPTS = 32
APPEND_RETRY_BUDGET_S = 10.0
APPEND_JITTER_CAP_S = 0.02

# How many changed records the Core keeps in memory before writing them to the record index. Each flush waits for
# the tenant's appends in flight (a pause of one fsync once every ~200 decisions); fewer flushes cost memory.
FLUSH_RECORDS = 1000
# Seqs read at a time when an event listing is filtered (the window doubles up to the maximum).
EVENT_SCAN_WINDOW = 512
EVENT_SCAN_WINDOW_MAX = 65_536

_LOGGED_MANDATE_EVENTS = {
    EventType.AUTONOMY_SUSPENDED: "suspended",
    EventType.AUTONOMY_RESUMED: "resumed",
    EventType.AUTONOMY_REVOKED: "revoked",
    EventType.AUTONOMY_REVOKED_BY_CONSEQUENCE: "revoked",
}


@dataclass(slots=True)
class _Staged:
    """A validated command: its outcome, its answer, and what must be durable before it is given."""

    outcome: Outcome
    response: dict[str, Any]
    durable: asyncio.Future[list[dict[str, Any]]]
    own: bool   # the entries are this command's (False: it only read pipelined state)



async def _finish_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a worker thread, waited for to its end even when the caller is cancelled meanwhile
    (the cancellation is raised once it has ended). The callers hold the Core's lock while a thread uses the
    record index's connection: a wait cut short by a cancellation would release the lock, and let the next call
    use that connection, while the thread still does."""
    job = asyncio.ensure_future(asyncio.to_thread(function, *args))
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break   # the job's own failure: job.result() raises it below
    if cancelled:
        if not job.cancelled():
            job.exception()   # retrieved, so that asyncio does not report it as never retrieved
        raise asyncio.CancelledError
    return job.result()


class CoreClosedError(Exception):
    """The instance was stopped before this call ran, which wrote nothing. Evicted or shut down: ask the runtime
    for a fresh one. ``discarded``: the tenant was purged, and a fresh instance may belong to another tenant."""

    def __init__(self, tenant_id: str, *, discarded: bool = False) -> None:
        super().__init__(tenant_id)
        self.tenant_id = tenant_id
        self.discarded = discarded


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TenantCore:
    def __init__(self, tenant_id: str, log: TenantEventLog, policies: TenantPolicies, *,
                 quotas: QuotaSource | None = None, snapshot_every: int = 1000,
                 clock: Callable[[], datetime] = _utc_now, index_dir: Path | None = None) -> None:
        self.tenant_id = tenant_id
        self.policies = policies
        self._log = log
        self._quotas = quotas
        self._snapshot_every = max(1, snapshot_every)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._index = RecordIndex(index_dir)
        self._projection = Projection(CoreState(self._index))
        self._flushed_seq = 0   # the seq of the newest state flushed to the record index
        self._flush_due = False
        self._closed = False
        self._discarded = False
        self._background: asyncio.Task[None] | None = None
        self._inflight: list[asyncio.Future[list[dict[str, Any]]]] = []   # staged appends, in chain order
        self._diverged = False   # something folded into the projection was not stored
        self.started_at = now_iso()
        self.last_used_at = self.started_at
        self.replayed_from_snapshot: int | None = None
        self.replayed_events = 0
        self.counters = {"commands": 0, "rejected": 0, "eventsAppended": 0, "appends": 0, "snapshots": 0,
                         "appendConflicts": 0}

    @property
    def state(self) -> CoreState:
        return self._projection.state

    @property
    def log(self) -> TenantEventLog:
        return self._log

    # --- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the state: the newest flushed state of the record index that still matches the log, then the tail
        after it."""
        before = await self._load()
        self.replayed_events = self.state.seq - before

    async def _load(self) -> int:
        """Load the newest flushed state that matches the log into the (empty) projection and fold in the tail;
        return the seq the replay started at."""
        try:
            row = await self._matching_state()
            if row is not None:
                self._projection.load_compact(row.body)
                self._flushed_seq = row.seq
                self.replayed_from_snapshot = row.seq
        except (sqlite3.Error, IndexUnusableError, ValueError, KeyError, TypeError) as exc:
            logger.warning("tenant {} record index unusable, rebuilding it from the log: {}", self.tenant_id, exc)
            self._rebuild_index()
        before = self.state.seq
        await self._catch_up()
        # Most instances go idle after their first request: a thousand tenants each keeping an open SQLite file
        # (about 165 KB) would cost more memory than their state. The next read or flush opens it again, and a
        # file removed meanwhile is then refused, never re-created empty (RecordIndex._reconnect). Closing may
        # checkpoint the file (an fsync): not on the event loop.
        await _finish_in_thread(self._index.release)
        return before

    def _rebuild_index(self) -> None:
        try:
            self._index.reset()
        except (sqlite3.Error, IndexUnusableError) as exc:
            raise StorageError(f"tenant {self.tenant_id}: the record index cannot be created: {exc}") from exc
        self._projection = Projection(CoreState(self._index))
        self._flushed_seq = 0
        self.replayed_from_snapshot = None

    async def _matching_state(self) -> StateRow | None:
        """The newest state row of the index, if the log still holds the entry it was flushed at.

        The rows are read before the log's head: a flush only follows the durable append of what it covers, so a
        row beyond the head, or one whose hash is not the log's at its seq, means the log was replaced (a restore)
        and the whole index is rebuilt."""
        genesis = await self._hash_at(1)
        if genesis is None:
            return None
        self._index.open(genesis)
        rows = self._index.states()
        if not rows:
            return None
        head = await self._log.head()
        newest = rows[0]
        if newest.seq > head.seq or await self._hash_at(newest.seq) != newest.hash:
            logger.warning("tenant {} record index is at seq {}, which the log (head {}) does not hold; "
                           "rebuilding it", self.tenant_id, newest.seq, head.seq)
            self._rebuild_index()
            return None
        return newest

    async def _hash_at(self, seq: int) -> str | None:
        async for entry in self._log.entries(from_seq=seq, to_seq=seq):
            digest = entry.get("hash")
            return digest if isinstance(digest, str) else None
        return None

    async def close(self) -> None:
        """Stop accepting calls and flush what changed to the record index, so the next start replays little. The
        log is the runtime's to close (other readers share it)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._settle()
            if self.state.changed_count or self.state.seq > self._flushed_seq:
                await self._flush()
            await _finish_in_thread(self._index.close)   # closing checkpoints the file: an fsync

    def discard(self) -> None:
        """Stop accepting calls and write nothing (the tenant was purged; its id may name a new tenant). The
        index is closed once a call that holds the lock now has finished with it."""
        self._closed = self._discarded = True
        with_lock = asyncio.get_running_loop().create_task(self._close_index_when_free())
        self._background = with_lock

    async def release_idle(self) -> None:
        """Let the record index's file go while nothing runs (the runtime calls this for idle instances); the
        next call opens it again. Closing checkpoints the file's write-ahead log, an fsync (0.4 ms each on our
        machines: a sweep over a thousand idle tenants would hold the event loop for 0.4 s), so it runs in a
        worker thread, under the lock, so that no call uses the connection meanwhile."""
        if self._lock.locked() or not self._index.holds_file:  # in use (the next sweep tries again), or let go
            return
        async with self._lock:
            await _finish_in_thread(self._index.release)

    async def _close_index_when_free(self) -> None:
        async with self._lock:
            await _finish_in_thread(self._index.close)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        return self._lock.locked() or bool(self._inflight)

    # --- running commands ----------------------------------------------------------------------------------------

    async def run(self, command: Command) -> dict[str, Any]:
        """Run one command atomically with respect to every other call on this tenant, answering only once its
        events are durable.

        Commands are pipelined: the lock covers validation and chaining, not the write. A staged command's
        entries are folded into the projection at once, so the next command validates against a state that
        includes them while they are being written, and its own entries join the next group commit. If a write
        fails or another process appended first, every command chained after it is refused by the store too (its
        entries name a ``prev`` that is not the head); the projection is then rebuilt from the log, and each of
        them is validated again against the durable state (a write that failed answers its own error).
        """
        self.counters["commands"] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + APPEND_RETRY_BUDGET_S
        attempt = 0
        while attempt < APPEND_ATTEMPTS or loop.time() < deadline:
            if attempt:
                # Jitter, so that processes that keep colliding on one tenant fall out of step.
                await asyncio.sleep(random.uniform(0, min(APPEND_JITTER_CAP_S, 0.002 * attempt)))  # noqa: S311
            async with self._lock:
                self._touch()
                if self._closed:
                    raise CoreClosedError(self.tenant_id, discarded=self._discarded)
                try:
                    staged = await self._stage(command)
                except ApiError:
                    self.counters["rejected"] += 1
                    raise
            try:
                # Shielded: a client that goes away must not pull its entries out from under the commands
                # chained on them.
                entries = await asyncio.shield(staged.durable)
            except AppendConflictError:
                self.counters["appendConflicts"] += 1
                attempt += 1
                continue
            except QuotaExceededError as exc:
                self.counters["rejected"] += 1
                raise quota_exceeded(str(exc) or "The tenant's storage quota is used up.") from exc
            if staged.own:
                self._after_append(entries)
            if staged.outcome.error is not None:
                self.counters["rejected"] += 1
                raise staged.outcome.error
            return staged.response
        logger.bind(tenantId=self.tenant_id).warning(
            "tenant {}: a command lost the race to append {} times to other writers; answering 409",
            self.tenant_id, attempt)
        raise ApiError(409, "CONCURRENT_UPDATE", "The tenant's state kept changing while this request was being "
                       "applied (other writers); nothing was recorded. Retry the request.",
                       details={"attempts": attempt})

    async def _stage(self, command: Command) -> _Staged:
        """Under the lock: validate against the newest state (durable or pipelined), chain the outcome's events
        on its head, fold them in and queue them. The caller answers once ``durable`` resolves."""
        if self._diverged:
            await self._settle()
        if not self._inflight:
            await self._catch_up()  # nothing of ours is in flight, so the store's head is the one to validate at
        outcome = command(Commands(self.tenant_id, self.state, self.policies), self._clock())
        if not outcome.drafts:
            # An answer read from pipelined state (an idempotent replay, say) waits until that state is durable.
            response = outcome.respond(self.state) if outcome.error is None else {}
            return _Staged(outcome, response, self._durable_tail(), own=False)
        await self._check_quotas(len(outcome.drafts))
        state = self.state
        append_chained = getattr(self._log, "append_chained", None)
        if append_chained is None:  # a store without pipelining: append and wait under the lock, as before
            durable: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
            try:
                entries = await self._log.append(outcome.drafts, expected_seq=state.seq)
            except Exception as exc:
                durable.set_exception(exc)
                return _Staged(outcome, {}, durable, own=True)
            durable.set_result(entries)
        else:
            try:
                entries, lines = chain_drafts(self.tenant_id,
                                              LogHead(state.seq, state.head_hash, state.last_event_at),
                                              outcome.drafts)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"event not stored: {exc}") from exc
            self._fold(entries)  # before it is queued: an entry the projection cannot apply is never written
            try:
                durable = append_chained(entries, lines)
            except BaseException:
                self._diverged = True   # folded, never queued: the state is rebuilt from the log before the next
                raise
            self._track(durable)
            return _Staged(outcome, outcome.respond(self.state) if outcome.error is None else {}, durable, own=True)
        self._fold(entries)
        return _Staged(outcome, outcome.respond(self.state) if outcome.error is None else {}, durable, own=True)

    def _fold(self, entries: list[dict[str, Any]]) -> None:
        """Fold a command's own entries into the projection; one that fails leaves it to be rebuilt."""
        try:
            for entry in entries:
                self._projection.apply(entry)
        except Exception:
            self._diverged = True
            raise

    def _track(self, durable: asyncio.Future[list[dict[str, Any]]]) -> None:
        self._inflight.append(durable)

        def settled(future: asyncio.Future[list[dict[str, Any]]]) -> None:
            self._inflight.remove(future)
            # Entries already folded into the projection were not stored: it must be rebuilt from the log.
            if future.cancelled() or future.exception() is not None:
                self._diverged = True

        durable.add_done_callback(settled)

    def _durable_tail(self) -> asyncio.Future[list[dict[str, Any]]]:
        """A future that resolves once everything the projection holds is durable (fails if some of it is not)."""
        tail = self._inflight[-1] if self._inflight else None
        done: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        if tail is None:
            done.set_result([])
            return done

        def follow(future: asyncio.Future[list[dict[str, Any]]]) -> None:
            if future.cancelled() or future.exception() is not None:
                # What was read is gone: the command is validated again once the projection is rebuilt.
                done.set_exception(AppendConflictError(self.state.seq, self.state.seq))
            else:
                done.set_result([])

        tail.add_done_callback(follow)
        return done

    async def _settle(self) -> None:
        """Under the lock: wait until nothing of ours is in flight, and rebuild the projection from the log if
        something folded into it was not stored."""
        while self._inflight:
            await asyncio.wait(list(self._inflight))
        if self._diverged:
            logger.bind(tenantId=self.tenant_id).info(
                "tenant {}: a pipelined append was not stored; rebuilding the state from the log", self.tenant_id)
            self._projection = Projection(CoreState(self._index))
            await self._load()
            self._diverged = False

    async def read(self, reader: Callable[[Commands], Any]) -> Any:
        """Run a read against the newest durable state (caught up with other writers)."""
        async with self._lock:
            self._touch()
            if self._closed:
                raise CoreClosedError(self.tenant_id, discarded=self._discarded)
            await self._settle()
            await self._catch_up()
            return reader(Commands(self.tenant_id, self.state, self.policies))

    def _touch(self) -> None:
        self.last_used_at = now_iso()

    async def _catch_up(self) -> None:
        """Fold in entries appended by anyone else (another gateway process, the tenant registry)."""
        head = await self._log.head()
        if head.seq < self.state.seq:
            raise CorruptStoreError(f"tenant {self.tenant_id} log head {head.seq} is behind its projection "
                                    f"({self.state.seq}): the log was truncated")
        if head.seq > self.state.seq:
            async for entry in self._log.entries(from_seq=self.state.seq + 1, to_seq=head.seq):
                self._projection.apply(entry)
                if self.state.changed_count >= FLUSH_RECORDS:
                    await self._flush()  # a long tail (a restart, another process's burst) stays bounded too

    async def _check_quotas(self, count: int) -> None:
        quotas = await self._current_quotas()
        max_events = quotas.get("maxEvents")
        if isinstance(max_events, int) and max_events > 0 and self.state.seq + count > max_events:
            raise quota_exceeded(f"The tenant's event quota ({max_events} events) would be exceeded.",
                                 {"quota": "maxEvents", "limit": max_events, "used": self.state.seq,
                                  "requested": count})
        max_mb = quotas.get("maxStorageMB")
        if isinstance(max_mb, int | float) and max_mb > 0:
            used = await self._log.size_bytes()
            if used >= max_mb * 1024 * 1024:
                raise quota_exceeded(f"The tenant's storage quota ({max_mb} MB) is used up.",
                                     {"quota": "maxStorageMB", "limit": max_mb,
                                      "used": round(used / (1024 * 1024), 3), "usedBytes": used})

    async def _current_quotas(self) -> Mapping[str, Any]:
        if self._quotas is None:
            return {}
        result = self._quotas()
        if inspect.isawaitable(result):
            result = await result
        return result or {}

    def _after_append(self, entries: list[dict[str, Any]]) -> None:
        self.counters["appends"] += 1
        self.counters["eventsAppended"] += len(entries)
        for entry in entries:
            word = _LOGGED_MANDATE_EVENTS.get(entry["evento"])
            if word is None:
                continue
            payload = entry.get("payload") or {}
            cause = payload.get("consequencia_id") or "manual"
            # PROC-008 greps these lines: keep the word, tenant, mandate and cause in the message itself.
            logger.bind(tenantId=self.tenant_id, mandateId=payload.get("mandate_id"), cause=cause).info(
                "mandate {} of tenant {} {} (cause: {}, actor: {}, reason: {})", payload.get("mandate_id"),
                self.tenant_id, word, cause, entry.get("actor"), payload.get("motivo"))
        if self._flush_wanted():
            self._flush_due = True

    def _flush_wanted(self) -> bool:
        return (self.state.seq - self._flushed_seq >= self._snapshot_every
                or self.state.changed_count >= FLUSH_RECORDS)

    async def maybe_flush(self) -> None:
        """Write what changed to the record index when enough accumulated (called after commands)."""
        if not self._flush_due or self._closed:
            return
        async with self._lock:
            # Closed (it flushed itself) or discarded after a purge: write nothing. Not wanted any more: another
            # caller that waited for the lock flushed already.
            self._flush_due = False
            if self._closed or not self._flush_wanted():
                return
            await self._settle()  # the index holds durable state only
            await self._flush()

    async def _flush(self) -> None:
        """Under the lock, with nothing in flight: write the changed records and the compact state at this seq."""
        rows = self._projection.flush_rows()
        if rows is None:
            return
        records, history, state_row = rows
        try:
            if not self._index.is_open:
                genesis = await self._hash_at(1)
                if genesis is None:
                    return
                self._index.open(genesis)
            # In a worker thread: a flush of a thousand records must not stall other tenants' requests.
            await _finish_in_thread(self._index.write, records, history, state_row)
        except (sqlite3.Error, IndexUnusableError, OSError) as exc:
            # Costs memory and replay time, never correctness: the state is rebuilt from the index and the log
            # (flush_rows let go of the mandates' new history, which only the log now holds).
            logger.warning("tenant {} record index flush at seq {} failed: {}", self.tenant_id, state_row.seq, exc)
            self._diverged = True
            return
        self._projection.flushed()
        self._flushed_seq = state_row.seq
        self.counters["snapshots"] += 1

    # --- commands ------------------------------------------------------------------------------------------------

    async def execute(self, command: CommandMethod, *args: Any, actor: str | None, request_id: str | None = None
                      ) -> dict[str, Any]:
        """Run one of :data:`COMMANDS` (a ``Commands`` method) with ``args``, as ``actor``, and answer its response.

        ``core.decide(body, actor=...)`` is the same call spelt by the command's name.
        """
        return await self._command(lambda c, now: command(c, *args, actor=actor, request_id=request_id, now=now))

    def __getattr__(self, name: str) -> Callable[..., Awaitable[dict[str, Any]]]:
        command = COMMANDS.get(name)
        if command is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self.execute, command)

    async def _command(self, command: Command) -> dict[str, Any]:
        try:
            return await self.run(command)
        finally:
            await self.maybe_flush()

    # --- queries -------------------------------------------------------------------------------------------------

    async def episode(self, episodio_id: str) -> dict[str, Any]:
        return await self.read(lambda c: c.episode(episodio_id).to_api())

    async def mandates(self, *, status: str | None = None, agent_id: str | None = None) -> list[dict[str, Any]]:
        def select(c: Commands) -> list[dict[str, Any]]:
            # An agent's mandates are found by its own list of ids (oldest first, as values() orders them), not by
            # reading every mandate of the tenant.
            mandates = (c.state.mandates.values() if agent_id is None
                        else [c.state.mandates[m] for m in c.state.agent_mandates.get(agent_id, [])])
            return [m.to_api() for m in mandates
                    if (status is None or m.status == status) and (agent_id is None or m.agent_id == agent_id)]
        return await self.read(select)

    async def mandate(self, mandate_id: str) -> dict[str, Any]:
        def find(c: Commands) -> dict[str, Any]:
            mandate = c.mandate(mandate_id)
            return {**mandate.to_api(), "history": c.state.mandate_history(mandate)}
        return await self.read(find)

    async def reviews(self, *, status: str | None = None) -> list[dict[str, Any]]:
        return await self.read(lambda c: [r.to_api() for r in c.state.reviews.values()
                                          if status is None or r.status == status])

    async def review(self, review_id: str) -> dict[str, Any]:
        return await self.read(lambda c: c.review(review_id).to_api())

    async def consequences(self) -> list[dict[str, Any]]:
        return await self.read(lambda c: [o.to_api() for o in c.state.consequencias.values()])

    async def listed(self, kind: str, *, offset: int, limit: int, status: str | None = None,
                     contrato_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the mandates or review cases (``kind``: ``mandates``, ``reviews``; of one ``status`` when
        given) or of the consequences (``consequences``; of one contract when ``contrato_id`` is given) in
        creation order, as :meth:`mandates`, :meth:`reviews` and :meth:`consequences` list them, and how many
        there are. The page is read from the record index; the projection's counters give the totals, except for
        one contract's consequences, which the index counts without decoding them."""
        def page(c: Commands) -> tuple[list[dict[str, Any]], int]:
            state = c.state
            records: RecordMap[Any]
            where = None if status is None else ("status", status)
            total: int | None
            if kind in ("mandates", "reviews"):
                records, counts = ((state.mandates, state.mandate_statuses) if kind == "mandates"
                                   else (state.reviews, state.review_statuses))
                total = sum(counts.values()) if status is None else counts.get(status, 0)
            elif kind == "consequences":
                records, total = state.consequencias, state.consequence_count
                if contrato_id is not None:
                    where, total = ("contrato_id", contrato_id), None
            else:
                raise ValueError(f"no listing of {kind!r}")
            found, total = records.page(offset, limit, total, where)
            return [record.to_api() for record in found], total
        return await self.read(page)

    async def consequence(self, consequence_id: str) -> dict[str, Any]:
        def find(c: Commands) -> dict[str, Any]:
            consequence = c.state.consequencias.get(consequence_id)
            if consequence is None:
                raise ApiError(404, "CONSEQUENCE_NOT_FOUND", f"Consequence {consequence_id} does not exist.")
            return consequence.to_api()
        return await self.read(find)

    async def dashboard(self) -> dict[str, Any]:
        def build(c: Commands) -> dict[str, Any]:
            summary = summarise(c.state)
            return {"tenant": self.tenant_id, "mandates": summary["mandates"], "reviews": summary["reviews"],
                    "consequences": summary["consequences"],
                    "episodes": {estado: c.state.episode_states.get(estado, 0)
                                 for estado in ("CRIADO", "DECIDIDO", "EM_OBSERVACAO", "ENCERRADO")},
                    "events": c.state.seq, "recentEvents": list(reversed(c.state.recent_events))}
        return await self.read(build)

    async def summary(self) -> dict[str, Any]:
        return await self.read(lambda c: summarise(c.state))

    async def events(self, *, tipo: str | None = None, entidade: str | None = None, limit: int = 50,
                     offset: int = 0) -> dict[str, Any]:
        """``GET /api/v1/eventos``: the short form of :meth:`event_page`'s entries, newest first."""
        entries, total = await self.event_page(tipo=tipo, entidade=entidade, limit=limit, offset=offset)
        return {"eventos": [event_summary(entry) for entry in entries], "total": total, "limit": limit,
                "offset": offset}

    async def event_page(self, *, tipo: str | None = None, entidade: str | None = None, limit: int = 50,
                         offset: int = 0, oldest_first: bool = False) -> tuple[list[dict[str, Any]], int]:
        """The entries of type ``tipo`` and entity ``entidade`` (None: any) newest first (or oldest first),
        ``offset`` of them skipped and at most ``limit`` given, and how many there are in all.

        The number comes from the projection's counters, the page from the log read a window of seqs at a time
        from the head backwards (or from genesis forwards) until the page is full: a page costs about the events
        between it and its end of the log, not the whole history. Both describe one durable head, taken under the
        lock; the log is then read without it (entries up to that head never change)."""
        def at_head(c: Commands) -> tuple[int, int]:
            return c.state.seq, c.state.event_total(tipo, entidade)

        head, total = await self.read(at_head)
        if offset >= total:
            return [], total
        if tipo is None and entidade is None:   # every seq matches: the page's seqs are known
            first, last = (offset + 1, min(head, offset + limit)) if oldest_first else \
                (max(1, head - offset - limit + 1), head - offset)
            page = [entry async for entry in self._log.entries(from_seq=first, to_seq=last)]
            return (page if oldest_first else page[::-1]), total
        wanted = min(offset + limit, total)
        page = []
        seen = 0   # matches met so far, in the page's order
        # The first window is sized by how dense the matches are in the whole log (with a margin); each later one
        # doubles.
        window = min(EVENT_SCAN_WINDOW_MAX, max(EVENT_SCAN_WINDOW, wanted * head // total * 5 // 4 + 1))
        low, high = 1, head   # the seqs not read yet
        while low <= high and seen < wanted:
            first, last = (low, min(high, low + window - 1)) if oldest_first else (max(low, high - window + 1), high)
            matches = [entry async for entry in self._log.entries(from_seq=first, to_seq=last)
                       if (tipo is None or entry["evento"] == tipo)
                       and (entidade is None or entry["entidade"] == entidade)]
            for entry in (matches if oldest_first else reversed(matches)):
                if offset <= seen < wanted:
                    page.append(entry)
                seen += 1
            low, high = (last + 1, high) if oldest_first else (low, first - 1)
            window = min(window * 2, EVENT_SCAN_WINDOW_MAX)
        return page, total

    def metrics(self) -> dict[str, Any]:
        state = self.state
        return {"tenant": self.tenant_id, "startedAt": self.started_at, "lastUsedAt": self.last_used_at,
                "events": state.seq, "headHash": state.head_hash, "lastEventAt": state.last_event_at,
                "snapshotSeq": self._flushed_seq, "replayedFromSnapshot": self.replayed_from_snapshot,
                "replayedEvents": self.replayed_events, "busy": self.busy, **self.counters,
                "appendsInFlight": len(self._inflight), "recordsInMemory": state.resident_count,
                **self._commit_stats(),
                "mandates": summarise(state)["mandates"]}

    def _commit_stats(self) -> dict[str, int]:
        """The log's group-commit counters, where its store keeps them (how many commands shared each write)."""
        stats = getattr(self._log, "commit_stats", None)
        return stats() if callable(stats) else {}


def summarise(state: CoreState) -> dict[str, Any]:
    """Counts for the dashboard and the tenant list: cheap, from the projection alone."""
    mandates = {status.value: state.mandate_statuses.get(status.value, 0) for status in MandateStatus}
    reviews = {status.value: state.review_statuses.get(status.value, 0) for status in ReviewStatus}
    return {"seq": state.seq, "mandates": {**mandates, "total": sum(mandates.values())}, "reviews": reviews,
            "consequences": {"total": state.consequence_count}}
