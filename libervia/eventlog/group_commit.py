"""Group commit: concurrent appends to one log share one durable write (one fsync, one transaction).

Every event store uses the same queue: appends wait in it, and one flush at a time hands every waiting batch to
the store's ``write_group``, which writes them in order with one durable operation and returns, per batch, its
stored entries or the exception that refused it (a bad payload, an ``expected_seq`` that no longer holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from libervia.storage import EventDraft, LogHead, StorageError

Entries = list[dict[str, Any]]


@dataclass(slots=True)
class PendingAppend:
    drafts: list[EventDraft]
    expected_seq: int | None
    future: asyncio.Future[Entries]
    # Entries the caller already chained on the head it expects (a pipelined command) and their stored lines,
    # encoded when queued (the caller goes on to fold the entries into state that may share their objects):
    # written as they are if the head is still exactly their ``prev``, refused otherwise.
    chained: Entries | None = None
    chained_lines: list[bytes] | None = None


WriteGroup = Callable[[list[PendingAppend]], Awaitable[list[Entries | Exception]]]


@dataclass(slots=True)
class LogHealth:
    """What a tenant log's status reports about failed writes, and the status document itself."""

    tenant_id: str
    degraded: bool = False
    error_count: int = 0
    last_append_at: str | None = None
    quarantined: int = 0

    def write_failed(self, exc: Exception) -> None:
        self.degraded = True
        self.error_count += 1
        logger.error("append to the event log of tenant {} failed: {}", self.tenant_id, exc)

    def status(self, head: LogHead) -> dict[str, Any]:
        return {
            "enabled": True,
            "degraded": self.degraded,
            "errorCount": self.error_count,
            "events": head.seq,
            "headHash": head.hash,
            "lastAppendAt": self.last_append_at or head.last_append_at,
            "quarantined": self.quarantined,
        }


class GroupCommitQueue:
    def __init__(self, write_group: WriteGroup, on_failure: Callable[[Exception], None], *,
                 group_commit: bool = True, name: str = "eventlog-flush") -> None:
        self._write_group = write_group
        self._on_failure = on_failure
        self._group_commit = group_commit  # off only to measure what grouping buys (benchmarks)
        self._name = name
        self._pending: list[PendingAppend] = []
        self._flusher: asyncio.Task[None] | None = None
        self.groups_written = 0    # durable writes (fsyncs, transactions) that stored at least one batch
        self.batches_written = 0   # batches those writes stored

    async def submit(self, drafts: Sequence[EventDraft], expected_seq: int | None) -> Entries:
        return await self.enqueue(drafts, expected_seq)

    def enqueue(self, drafts: Sequence[EventDraft], expected_seq: int | None, chained: Entries | None = None,
                chained_lines: list[bytes] | None = None) -> asyncio.Future[Entries]:
        """Queue one batch now (so batches are written in the order they were queued) and return its future."""
        loop = asyncio.get_running_loop()
        batch = PendingAppend(list(drafts), expected_seq, loop.create_future(), chained, chained_lines)
        self._pending.append(batch)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name=self._name)
        return batch.future

    @property
    def idle(self) -> bool:
        """Nothing queued and no write of ours in progress."""
        return self._flusher is None

    def abandon(self, failure: Exception) -> None:
        """Refuse every batch queued and not yet taken into a group write, with ``failure``."""
        pending, self._pending = self._pending, []
        for batch in pending:
            if not batch.future.done():
                batch.future.set_exception(failure)

    async def drain(self) -> None:
        """Wait until every queued append is written (or refused)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    def _take(self) -> list[PendingAppend]:
        # A caller cancelled before its batch was taken gets nothing written.
        waiting = [batch for batch in self._pending if not batch.future.done()]
        if self._group_commit:
            self._pending = []
            return waiting
        self._pending = waiting[1:]
        return waiting[:1]

    async def _flush(self) -> None:
        try:
            while self._pending:
                group = self._take()
                if not group:
                    continue
                try:
                    results = await self._write_group(group)
                except Exception as exc:
                    self._on_failure(exc)
                    failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                    results = [failure] * len(group)
                stored = sum(1 for result in results if not isinstance(result, BaseException))
                if stored:
                    self.groups_written += 1
                    self.batches_written += stored
                for batch, result in zip(group, results, strict=True):
                    if batch.future.done():
                        continue
                    if isinstance(result, BaseException):
                        batch.future.set_exception(result)
                    else:
                        batch.future.set_result(result)
        finally:
            self._flusher = None
