"""An in-memory append-only TenantEventLog, used only to develop the Core before the file store existed.

The Core's tests run against the real ``FileEventStore``; this log remains for the storage-independent
projection test that checks a snapshot round trip without touching disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from libervia.eventlog.chain import build_entries
from libervia.storage import EventDraft, LogHead, Snapshot


class MemoryEventLog:
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.stored: list[dict[str, Any]] = []
        self.snapshot: Snapshot | None = None
        self.closed = False

    async def append(self, drafts: Sequence[EventDraft]) -> list[dict[str, Any]]:
        assert not self.closed
        entries = build_entries(self.tenant_id, await self.head(), drafts)
        self.stored.extend(entries)
        return entries

    async def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        for entry in self.stored[from_seq - 1:to_seq]:
            yield entry

    async def head(self) -> LogHead:
        if not self.stored:
            return LogHead(0, None, None)
        last = self.stored[-1]
        return LogHead(last["seq"], last["hash"], last["ts"])

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "degraded": False, "errorCount": 0, "events": len(self.stored)}

    async def size_bytes(self) -> int:
        return sum(len(str(e)) for e in self.stored)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    async def load_snapshot(self) -> Snapshot | None:
        return self.snapshot

    async def close(self) -> None:
        self.closed = True
