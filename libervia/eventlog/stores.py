"""What every event store shares, so that a store implements only its I/O.

* :func:`chain_group`: chain the next group on this head. A store calls it while it holds its cross-process
  append lock, with the head as every process sees it; it applies the ``expected_seq`` rule batch by batch, in
  group order, builds and encodes the entries, and says whether the group crosses a checkpoint. The store then
  writes ``group.lines`` with one durable operation (or writes nothing when ``group.lines`` is empty).
* :class:`QueuedEventLog`: the base of a store's ``TenantEventLog``: the append guard (closed logs refuse, empty
  batches write nothing), the group-commit queue, the status document and the closing sequence. A subclass
  provides ``_write_group`` (durably write one group, usually through :func:`chain_group`) and ``_close_io``.
* :class:`OpenLogs`: the store's registry of open logs: one log object per tenant per process, opened once even
  under concurrent first requests, forgotten when it closes, all closed with the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from loguru import logger

from libervia.eventlog.chain import canonical_json, chain_drafts
from libervia.eventlog.group_commit import Entries, GroupCommitQueue, LogHealth, PendingAppend
from libervia.storage import AppendConflictError, EventDraft, LogHead, StorageError


@dataclass(slots=True)
class ChainedGroup:
    """One group of batches chained onto ``start``: per batch its entries or the exception that refused it."""

    start: LogHead
    head: LogHead
    results: list[Entries | Exception] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)   # canonical JSON of each accepted entry, no newline

    def accepted(self) -> Iterator[Entries]:
        return (result for result in self.results if isinstance(result, list))

    def crosses_checkpoint(self, every: int) -> bool:
        """Whether the group takes the log past a multiple of ``every`` (0: checkpoints only on close)."""
        return every > 0 and self.head.seq // every > self.start.seq // every


def chain_group(tenant_id: str, head: LogHead, batches: Sequence[PendingAppend]) -> ChainedGroup:
    """Chain the next group on this head.

    A batch whose ``expected_seq`` is not the head it would be chained on (counting the batches of the group
    accepted before it) fails alone with :class:`AppendConflictError`; so does one whose payload is not JSON
    (``ValueError``). Neither moves the head nor contributes a line. A batch the caller chained already
    (``chained``) must follow the head exactly, seq and hash: a pipelined command chained on a batch that was
    refused or never stored is refused in turn, so the chain stays single.
    """
    group = ChainedGroup(start=head, head=head)
    for batch in batches:
        chained = batch.chained
        if chained is not None and (chained[0]["seq"] != group.head.seq + 1 or chained[0]["prev"] != group.head.hash):
            group.results.append(AppendConflictError(chained[0]["seq"] - 1, group.head.seq))
            continue
        if batch.expected_seq is not None and batch.expected_seq != group.head.seq:
            group.results.append(AppendConflictError(batch.expected_seq, group.head.seq))
            continue
        try:
            if chained is not None and batch.chained_lines is not None:
                entries, lines = chained, batch.chained_lines
            else:
                entries, lines = chain_drafts(tenant_id, group.head, batch.drafts)
        except (TypeError, ValueError) as exc:
            group.results.append(ValueError(f"event not stored: {exc}"))
            continue
        group.lines += lines
        last = entries[-1]
        group.head = LogHead(last["seq"], last["hash"], last["ts"])
        group.results.append(entries)
    return group


class QueuedEventLog:
    """The part of a ``TenantEventLog`` that does not depend on where bytes live (see the module docstring)."""

    def __init__(self, tenant_id: str, *, on_close: Callable[[Any], None], group_commit: bool = True) -> None:
        self.tenant_id = tenant_id
        self._head = LogHead(0, None, None)   # as of our last look, for status()
        self._health = LogHealth(tenant_id)
        self._queue = GroupCommitQueue(self._write_group, self._health.write_failed, group_commit=group_commit,
                                       name=f"eventlog-flush-{tenant_id}")
        self._on_close = on_close
        self._closing = False
        self.discarding = False  # closing after a purge: _close_io must write nothing

    async def _write_group(self, batches: list[PendingAppend]) -> list[Entries | Exception]:
        raise NotImplementedError

    async def _close_io(self) -> None:
        """Release the store's resources once every queued append is written (a final checkpoint, files)."""

    async def append(self, drafts: Sequence[EventDraft], expected_seq: int | None = None) -> list[dict[str, Any]]:
        if self._closing:
            raise StorageError(f"the event log of tenant {self.tenant_id} is closed")
        if not drafts:
            return []
        return await self._queue.submit(drafts, expected_seq)

    def append_chained(self, entries: Entries, lines: list[bytes] | None = None) -> asyncio.Future[Entries]:
        """Queue entries the caller chained itself (with :func:`chain_drafts` on the head it expects, which also
        gives their ``lines``; encoded here when not given), without
        waiting: the future resolves once they are durable, or fails with :class:`AppendConflictError` if the
        head is no longer their ``prev`` when their group is written. Pipelined Cores use it to validate the next
        command while this one is being written.
        """
        if self._closing:
            raise StorageError(f"the event log of tenant {self.tenant_id} is closed")
        if lines is None:
            lines = [canonical_json(entry) for entry in entries]
        return self._queue.enqueue([], entries[0]["seq"] - 1, entries, lines)

    def commit_stats(self) -> dict[str, int]:
        """How many durable writes stored how many batches: batches per write is what group commit shares."""
        return {"logGroupWrites": self._queue.groups_written, "logBatchesWritten": self._queue.batches_written}

    def status(self) -> dict[str, Any]:
        return self._health.status(self._head)

    @property
    def closed(self) -> bool:
        return self._closing

    async def discard(self) -> None:
        """Close without the store writing anything on the way out (see ``TenantEventLog.discard``): appends
        still queued are refused, not written (their tenant was purged; on a shared store the id may already
        name a new tenant whose log they would land in). A group already being written finishes."""
        self.discarding = True
        self._queue.abandon(StorageError(f"tenant {self.tenant_id} was purged; nothing was written"))
        await self.close()

    async def close(self) -> None:
        """Wait for queued appends, then let the store release the log; further appends fail."""
        if self._closing:
            return
        self._closing = True
        try:
            await self._queue.drain()
            await self._close_io()
        finally:
            self._on_close(self)


class _Log(Protocol):
    tenant_id: str

    async def close(self) -> None: ...


L = TypeVar("L", bound=_Log)


class OpenLogs(Generic[L]):
    """A store's open logs, at most one per tenant (see the module docstring)."""

    def __init__(self) -> None:
        self._logs: dict[str, L] = {}
        self.lock = asyncio.Lock()  # held while a log is opened; hold it to change the registry consistently

    async def open(self, tenant_id: str, open_log: Callable[[], Awaitable[L]]) -> L:
        """The tenant's open log, or the one ``open_log`` opens (only one caller opens it)."""
        async with self.lock:
            log = self._logs.get(tenant_id)
            if log is None:
                log = self._logs[tenant_id] = await open_log()
            return log

    def get(self, tenant_id: str) -> L | None:
        """The tenant's log if it is open in this process (never opens one)."""
        return self._logs.get(tenant_id)

    def pop(self, tenant_id: str) -> L | None:
        """Take the tenant's log out of the registry (closing it is the caller's)."""
        return self._logs.pop(tenant_id, None)

    def forget(self, log: L) -> None:
        """Called by a log as it closes; a newer log of the same tenant stays."""
        if self._logs.get(log.tenant_id) is log:
            del self._logs[log.tenant_id]

    def __contains__(self, tenant_id: str) -> bool:
        return tenant_id in self._logs

    def values(self) -> list[L]:
        return list(self._logs.values())

    async def close_all(self) -> None:
        """Close every open log; one failing does not keep the others open."""
        for log in self.values():
            try:
                await log.close()
            except Exception as exc:
                logger.error("closing the event log of tenant {} failed: {}", log.tenant_id, exc)
