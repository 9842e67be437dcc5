"""A store that implements only its I/O passes the whole event-store contract.

``MemoryEventStore`` keeps lines in a dict shared by every store built over it (as two gateway processes share a
``BASE_DIR``); everything subtle (chaining a group on the head, ``expected_seq``, the checkpoint-crossing rule,
the append guard, one open log per tenant) comes from :mod:`libervia.eventlog.stores`, exactly as in the two
built-in stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.group_commit import Entries, PendingAppend
from libervia.eventlog.stores import OpenLogs, QueuedEventLog, chain_group
from libervia.storage import Checkpoint, EventStore, LogHead, Snapshot, StorageError
from libervia.testing.contracts.eventstore import EventStoreContract, MakeStore


@dataclass
class _Data:
    """The backing data every store over one ``_Data`` shares, guarded by its lock like a file by flock."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    lines: dict[str, list[bytes]] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    checkpoints: dict[str, list[Checkpoint]] = field(default_factory=dict)


def _head(lines: list[bytes]) -> LogHead:
    if not lines:
        return LogHead(0, None, None)
    last = orjson.loads(lines[-1])
    return LogHead(last["seq"], last["hash"], last["ts"])


class MemoryTenantEventLog(QueuedEventLog):
    def __init__(self, tenant_id: str, data: _Data, signer: CheckpointSigner, checkpoint_every: int,
                 on_close: Callable[[Any], None]) -> None:
        super().__init__(tenant_id, on_close=on_close)
        self._data, self._signer, self._every = data, signer, checkpoint_every
        self._lines = data.lines.setdefault(tenant_id, [])

    async def _write_group(self, batches: list[PendingAppend]) -> list[Entries | Exception]:
        async with self._data.lock:
            group = chain_group(self.tenant_id, _head(self._lines), batches)
            self._lines += group.lines
            self._head = group.head
            if group.crosses_checkpoint(self._every):
                self._checkpoint(group.head)
        return group.results

    def _checkpoint(self, head: LogHead) -> None:
        assert head.hash is not None
        self._data.checkpoints.setdefault(self.tenant_id, []).append(
            self._signer.sign(self.tenant_id, head.seq, head.hash))

    async def _close_io(self) -> None:
        async with self._data.lock:
            head = _head(self._lines)
            pinned = max((cp.seq for cp in self._data.checkpoints.get(self.tenant_id, [])), default=0)
            if head.hash is not None and head.seq > pinned:
                self._checkpoint(head)

    async def head(self) -> LogHead:
        self._head = _head(self._lines)
        return self._head

    async def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        stop = len(self._lines) if to_seq is None else min(to_seq, len(self._lines))
        for line in self._lines[max(from_seq, 1) - 1:stop]:
            yield orjson.loads(line)

    async def size_bytes(self) -> int:
        return sum(len(line) + 1 for line in self._lines)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if not 1 <= snapshot.seq <= len(self._lines) or \
                orjson.loads(self._lines[snapshot.seq - 1])["hash"] != snapshot.hash:
            raise ValueError(f"snapshot at seq {snapshot.seq} does not match the log of tenant {self.tenant_id}")
        self._data.snapshots[self.tenant_id] = snapshot

    async def load_snapshot(self) -> Snapshot | None:
        return self._data.snapshots.get(self.tenant_id)


class MemoryEventStore:
    def __init__(self, data: _Data, signer: CheckpointSigner, checkpoint_every: int) -> None:
        self._data, self._signer, self._every = data, signer, checkpoint_every
        self._logs: OpenLogs[MemoryTenantEventLog] = OpenLogs()

    async def open_log(self, tenant_id: str) -> MemoryTenantEventLog:
        async def open_() -> MemoryTenantEventLog:
            log = MemoryTenantEventLog(tenant_id, self._data, self._signer, self._every, self._logs.forget)
            await log.head()
            return log

        return await self._logs.open(tenant_id, open_)

    async def tenant_ids(self) -> list[str]:
        return sorted(self._data.lines)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._data.checkpoints.setdefault(checkpoint.tenant, []).append(checkpoint)

    async def checkpoints(self, tenant_id: str) -> list[Checkpoint]:
        return list(self._data.checkpoints.get(tenant_id, []))

    async def close(self) -> None:
        await self._logs.close_all()


class TestMemoryStoreFromSharedParts(EventStoreContract):
    @pytest.fixture
    async def make_store(self) -> AsyncIterator[MakeStore]:
        data = _Data()
        built: list[MemoryEventStore] = []

        async def make(signer: CheckpointSigner, checkpoint_every: int) -> EventStore:
            built.append(MemoryEventStore(data, signer, checkpoint_every))
            return built[-1]

        yield make
        for store in built:
            await store.close()


async def test_open_logs_opens_one_log_per_tenant_under_concurrent_first_calls() -> None:
    logs: OpenLogs[MemoryTenantEventLog] = OpenLogs()
    data, opened = _Data(), []

    async def open_() -> MemoryTenantEventLog:
        await asyncio.sleep(0)
        opened.append(MemoryTenantEventLog("acme", data, CheckpointSigner(b"k" * 32), 0, logs.forget))
        return opened[-1]

    got = await asyncio.gather(*(logs.open("acme", open_) for _ in range(10)))
    assert len(opened) == 1 and all(log is opened[0] for log in got)
    await opened[0].close()
    assert "acme" not in logs
    with pytest.raises(StorageError):
        await opened[0].append([])  # a closed log refuses even an empty batch
