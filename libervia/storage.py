"""What a storage plugin provides: the tenant registry and the per-tenant event logs.

The ``libervia_storage`` hook returns one :class:`Storage`. Two built-in plugins implement it (``storage_files``
on ``BASE_DIR``, the default; ``storage_postgres``); both pass the contract suites in
``libervia.testing.contracts``, and a third-party storage must pass them too.

Promises every implementation keeps:

* ``RegistryStore.update`` is an atomic, durable read-modify-write: when it returns, the new document is on disk
  (fsync) or committed, and two gateway processes sharing the store never lose each other's updates.
* ``TenantEventLog.append`` writes all of a batch or none of it, durably, before it returns, and the chain never
  forks even when several processes append to the same tenant.

A store need not write the subtle parts again: :mod:`libervia.eventlog.stores` has the chaining step
(``chain_group``), the append guard and group commit (``QueuedEventLog``) and the open-logs registry
(``OpenLogs``) that both built-in stores use, so a store implements only its I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One event as a command produces it; the store adds ``seq, id, ts, tenant, prev, hash``."""

    evento: str
    entidade: str
    entidade_id: str
    payload: Mapping[str, Any]
    actor: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogHead:
    seq: int                    # 0 for an empty log
    hash: str | None            # None for an empty log
    last_append_at: str | None  # RFC 3339, None when nothing was appended


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A projection of a tenant's state up to and including ``seq`` (whose entry hash is ``hash``)."""

    seq: int
    hash: str
    state: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the tenant's log had entry ``seq`` with ``hash`` at ``ts``."""

    tenant: str
    seq: int
    hash: str
    ts: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "seq": self.seq, "hash": self.hash, "ts": self.ts,
                "signature": self.signature}


@dataclass(slots=True)
class CheckResult:
    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class StorageError(Exception):
    """The store could not do what was asked (I/O failure, lost connection). Becomes a 503 for clients."""


class CorruptStoreError(StorageError):
    """The stored data cannot be read as it should (a broken registry file, a chain that does not link)."""


class AppendConflictError(Exception):
    """``append(..., expected_seq=N)`` found the log's head past ``N``: someone else appended first.

    Nothing was written. The caller catches up with the new entries, re-checks its command and tries again.
    """

    def __init__(self, expected_seq: int, head_seq: int) -> None:
        super().__init__(f"expected the log at seq {expected_seq}, found it at {head_seq}")
        self.expected_seq = expected_seq
        self.head_seq = head_seq


class QuotaExceededError(Exception):
    """An append would take the tenant past ``maxEvents`` or ``maxStorageMB``."""


@runtime_checkable
class TenantEventLog(Protocol):
    tenant_id: str

    async def append(self, drafts: Sequence[EventDraft], expected_seq: int | None = None) -> list[dict[str, Any]]:
        """Append the batch atomically and durably; return the stored entries (with seq, id, ts, prev, hash).

        With ``expected_seq`` the batch is written only if the log's head, checked under the store's cross-process
        lock at write time, is exactly that seq; otherwise :class:`AppendConflictError` and nothing is written.
        This is how a command validated against state at seq N makes sure no other process changed it meanwhile.
        """

    def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Stored entries in ``seq`` order, exactly as written (``hash`` included)."""

    async def head(self) -> LogHead:
        """The newest entry's seq and hash, as every process sees it now."""

    def status(self) -> dict[str, Any]:
        """``{enabled, degraded, errorCount, events, headHash, lastAppendAt, quarantined}`` for the status route."""

    async def size_bytes(self) -> int: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self) -> Snapshot | None: ...

    async def close(self) -> None:
        """Flush and release the log; further appends fail.

        A log may also offer ``async def discard()``: release it writing nothing more (no closing checkpoint, no
        tail settlement), used when the tenant was purged, perhaps through another process, and the same id may
        already name a new tenant whose files or rows this log must not touch. Logs built on
        :class:`libervia.eventlog.stores.QueuedEventLog` have it; without it the runtime calls ``close``.
        """


@runtime_checkable
class EventStore(Protocol):
    async def open_log(self, tenant_id: str) -> TenantEventLog:
        """Open (creating if needed) the tenant's log, quarantining a torn tail left by a crash."""

    async def tenant_ids(self) -> list[str]:
        """Tenants that have a log, for ``libervia verify --all`` and backups."""

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a signed checkpoint outside the tenant's own data."""

    async def checkpoints(self, tenant_id: str) -> list[Checkpoint]: ...


@runtime_checkable
class RegistryStore(Protocol):
    async def read(self) -> tuple[str, dict[str, Any]]:
        """The current registry document and its version token."""

    async def version(self) -> str:
        """A cheap token that changes whenever any process changes the registry."""

    async def update(self, mutate: Callable[[dict[str, Any]], T]) -> tuple[T, str, dict[str, Any]]:
        """Run ``mutate`` on the newest document under an exclusive lock and persist the result durably.

        ``mutate`` changes the document in place and returns a value; if it raises, nothing is written and the
        exception propagates. Returns ``(value, new_version, new_document)``.
        """

    async def record_key_usage(self, usage: Mapping[str, str]) -> None:
        """Remember ``keyId -> lastUsedAt`` (batched by the caller; never rewrites the registry itself)."""

    async def key_usage(self) -> dict[str, str]: ...


@runtime_checkable
class Storage(Protocol):
    name: str
    registry: RegistryStore
    events: EventStore

    async def start(self) -> None:
        """Connect, create what is missing; raise ``StorageError`` or ``CorruptStoreError`` to refuse start-up."""

    async def check_ready(self) -> dict[str, CheckResult]:
        """Readiness checks (reachable, writable, free space) named for ``/health/ready``."""

    async def close(self) -> None: ...


# --- moving a store's content: backup, restore, migration (``libervia backup|restore|migrate``) -------------------
#
# The archive layout (``libervia.ops.archive``) names what a store holds by relative paths: ``config/tenants.json``
# (the registry document), ``config/key_usage.json``, ``tenants/<id>/eventlog/events.jsonl`` (the stored entries,
# one canonical JSON line each) and ``checkpoints/<id>.jsonl``. Every store can be backed up through the protocol
# above (checkpoints, then each log up to its head, then the registry: consistent while serving). To be restored
# into, or migrated to, a store implements :class:`LogImporter`; a store that keeps files may also implement
# :class:`FileArchiving` to back up and restore its files as they are (snapshots and quarantined tails included).
#
# A ``RegistryStore`` may also push changes: ``async def wait_for_change(self, timeout_s: float) -> bool`` returns
# True as soon as any process changed the registry and False after ``timeout_s``, never raising. The tenant
# registry then follows the store through it (with ``timeout_s`` as a fallback poll) instead of polling every
# ``registry_refresh_s``.


@runtime_checkable
class LogImporter(Protocol):
    """A storage that can be loaded with entries another store wrote (``Storage`` implementations add this)."""

    async def import_log(self, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                         checkpoints: Sequence[Checkpoint]) -> int:
        """Store ``entries`` (stored entries, ``hash`` included, in seq order from 1) as the tenant's log, verbatim.

        All or nothing, durably. Re-runnable: when the tenant's log already holds the first ``k`` of these entries
        (its head is entry ``k``'s seq and hash) only the rest is added; a log that holds anything else raises
        :class:`CorruptStoreError` and nothing is written. Checkpoints the store already holds are not added
        twice. Returns how many entries were added.
        """

    async def set_aside(self) -> str:
        """Move everything the store holds out of the way (kept, never deleted), leave it empty and started, and
        say where the old content went. Raise ``StorageError`` if the store cannot."""


class ArchiveSink(Protocol):
    """Where :meth:`FileArchiving.backup_files` writes: one archive member per call, ``relpath`` in the layout."""

    def add(self, relpath: str, source: Any, size: int) -> None:
        """Copy ``size`` bytes read from the binary stream ``source``."""

    def add_bytes(self, relpath: str, content: bytes) -> None: ...


@runtime_checkable
class FileArchiving(Protocol):
    """Optional, for a store whose content is files in the archive layout: back them up and restore them as they
    are. Called on a storage that was built but not started."""

    def occupied(self) -> list[str]:
        """What the store's location holds now (entries that a restore would have to move aside)."""

    def staging_parent(self) -> Path:
        """A directory on the same file system as the store, to extract an archive into (the caller makes it if
        it is missing)."""

    def backup_files(self, sink: ArchiveSink) -> dict[str, dict[str, Any]]:
        """Write the store's files, consistent while other processes serve; return ``{tenant: {seq, hash}}``."""

    def restore_files(self, staged: Path) -> Path | None:
        """Move the extracted tree ``staged`` into place, the current content aside first; return where that
        went, or None if there was nothing."""


async def entries_past_head(tenant_id: str, entries: AsyncIterator[dict[str, Any]], head_seq: int,
                            head_hash: str | None) -> AsyncIterator[dict[str, Any]]:
    """The entries an ``import_log`` must still add to a log whose head is ``(head_seq, head_hash)``.

    Skips the entries up to the head and checks that the one at ``head_seq`` is the held head; raises
    :class:`CorruptStoreError` (before yielding anything) when the log holds something else.
    """
    matched = head_seq == 0
    async for entry in entries:
        seq = entry.get("seq")
        if isinstance(seq, int) and seq <= head_seq:
            if seq == head_seq:
                matched = entry.get("hash") == head_hash
            continue
        if not matched:
            break
        yield entry
    if not matched:
        raise CorruptStoreError(f"tenant {tenant_id}: the target already holds a different log (its head is seq "
                                f"{head_seq}); nothing more was imported")
