"""Backing up and restoring ``BASE_DIR`` as files (the store's side of ``libervia backup`` and ``restore``).

The archive layout is this store's own layout, so the files go in and come back as they are, snapshots and
quarantined tails included. Consistency without stopping writers rests on two facts of this store:

* a tenant's ``events.jsonl`` is append-only and every append holds ``events.lock`` (an exclusive ``flock``)
  until its bytes are written and fsynced. Holding that lock for an instant gives a size at which the file
  ends on a whole, durable entry; the bytes before that offset never change again, so they can be copied
  afterwards without the lock while writers go on appending behind them.
* checkpoints and snapshots only ever describe entries that already exist. Capturing them *before* the log
  guarantees that none of them points past the captured head (a checkpoint ahead of its log would look like
  truncation to ``verify``; a snapshot ahead of its log would rebuild state the log does not have).

The registry is captured last, under ``config/tenants.lock``, so every tenant whose log is in the archive is
also in the archived registry.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libervia.durable import exclusive_lock, fsync_dir
from libervia.storage import ArchiveSink, StorageError
from libervia_plugins.storage_files.eventlog import EventLogStats, LogFile, settle_tail

REGISTRY_FILES = ("config/tenants.json", "config/key_usage.json")
REGISTRY_LOCK = "config/tenants.lock"
# Crash leftovers are a line or one group write; far more than that after the last entry is damage for a human.
_MAX_UNSETTLED_TAIL = 64 * 1024 * 1024
# Entries a target may hold and still count as empty: earlier restores' leftovers, a file system's own, and the
# embedded rate limiter's state (not data: losing it only means full quotas).
_IGNORED_PREFIXES = (".pre-restore-", ".restore-")
# What a served BASE_DIR holds besides stored data: the embedded limiter's state and the telemetry plugin's
# per-process share files (BASE_DIR/telemetry), neither of which a restore replaces.
_IGNORED_NAMES = frozenset({"lost+found", "ratelimit.sqlite3", "ratelimit.sqlite3-wal", "ratelimit.sqlite3-shm",
                            "telemetry"})


class FileArchiver:
    """:class:`libervia.storage.FileArchiving` for one ``BASE_DIR``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).absolute()

    def occupied(self) -> list[str]:
        return [entry.name for entry in self._occupying_entries()]

    def staging_parent(self) -> Path:
        if self.base_dir.exists() and not self.base_dir.is_dir():
            raise StorageError(f"{self.base_dir} exists and is not a directory")
        return self.base_dir

    def backup_files(self, sink: ArchiveSink) -> dict[str, dict[str, Any]]:
        base_dir = self.base_dir.resolve()
        if not (base_dir / "config").is_dir() and not (base_dir / "tenants").is_dir():
            raise StorageError(f"{base_dir} is not a Libervia BASE_DIR (it has neither config/ nor tenants/)")
        writer = _FileCapture(sink, base_dir)
        chains: dict[str, dict[str, Any]] = {}
        for path in _regular_files(base_dir / "checkpoints"):
            content = _checkpoint_lines(path)
            if content is not None:
                writer.add_bytes(path, content)
        for tenant in _tenant_ids(base_dir):
            tenant_dir = base_dir / "tenants" / tenant
            for path in [*_regular_files(tenant_dir / "snapshots"),
                         *_regular_files(tenant_dir / "eventlog" / "quarantine")]:
                writer.add_file(path)
            head = writer.add_log(tenant_dir / "eventlog" / "events.jsonl", tenant)
            if head is not None:
                chains[tenant] = head
        with exclusive_lock(base_dir / REGISTRY_LOCK):
            registry = [(path, path.read_bytes()) for path in (base_dir / rel for rel in REGISTRY_FILES)
                        if path.is_file()]
        for path, content in registry:
            writer.add_bytes(path, content)
        return chains

    def restore_files(self, staged: Path) -> Path | None:
        """Move the target's current entries aside, then the staged ones in; every move is a rename."""
        aside = None
        occupied = [entry for entry in self._occupying_entries() if entry != staged]
        if occupied:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = Path(tempfile.mkdtemp(prefix=f".pre-restore-{stamp}-", dir=self.base_dir))
            for entry in occupied:
                entry.rename(aside / entry.name)
            fsync_dir(aside)
        for entry in staged.iterdir():
            entry.rename(self.base_dir / entry.name)
        staged.rmdir()
        fsync_dir(self.base_dir)
        return aside

    def _occupying_entries(self) -> list[Path]:
        base_dir = self.base_dir
        if not base_dir.is_dir():
            return [base_dir] if base_dir.exists() else []
        return sorted(entry for entry in base_dir.iterdir()
                      if entry.name not in _IGNORED_NAMES and not entry.name.startswith(_IGNORED_PREFIXES))


class _FileCapture:
    """Feeds captured files to the sink under their path relative to ``BASE_DIR``."""

    def __init__(self, sink: ArchiveSink, base_dir: Path) -> None:
        self._sink = sink
        self._base_dir = base_dir

    def _rel(self, path: Path) -> str:
        return path.relative_to(self._base_dir).as_posix()

    def add_bytes(self, path: Path, content: bytes) -> None:
        self._sink.add_bytes(self._rel(path), content)

    def add_file(self, path: Path) -> None:
        try:
            source = path.open("rb")
        except FileNotFoundError:
            return  # superseded (a newer snapshot replaced it) between listing and opening; nothing lost
        with source:
            self._sink.add(self._rel(path), source, os.fstat(source.fileno()).st_size)

    def add_log(self, log: Path, tenant: str) -> dict[str, Any] | None:
        """Copy the log up to its last settled entry and return that entry's ``{seq, hash}``.

        Bytes after it (a torn line or a group write a crash cut short) are what the gateway quarantines when it
        next takes the lock; they go into the archive as a quarantine file, read while the lock is held since
        the gateway may truncate them as soon as it is released.
        """
        try:
            source = log.open("rb")
        except FileNotFoundError:
            return None
        with source:
            with _flocked(log.with_name("events.lock"), owner_of=log) as lock_fd:
                view = LogFile(source.fileno(), EventLogStats())
                size = view.size()
                _, end, head = settle_tail(view, lock_fd, size)
                if size - end > _MAX_UNSETTLED_TAIL:
                    raise StorageError(f"tenant {tenant}: {size - end} bytes after the last readable entry; "
                                       "verify the log (PROC-007) before backing it up")
                unsettled = view.pread(end, size - end)
            if unsettled:
                print(f"warning: tenant {tenant}: {len(unsettled)} bytes after the last whole entry (left by a "
                      "crashed writer) archived under eventlog/quarantine/, as the gateway would", file=sys.stderr)
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                self.add_bytes(log.parent / "quarantine" / f"{stamp}-backup-{os.urandom(3).hex()}.jsonl",
                               unsettled)
            source.seek(0)
            self._sink.add(self._rel(log), source, end)
        if head is None:
            return {"seq": 0, "hash": None}
        return {"seq": head["seq"], "hash": head["hash"]}


def _checkpoint_lines(path: Path) -> bytes | None:
    """The checkpoint file's whole lines, read under the flock its writers take while appending."""
    try:
        with _flocked(path, owner_of=path) as fd:
            content = b""
            while chunk := os.read(fd, 1 << 20):
                content += chunk
    except FileNotFoundError:
        return None
    return content[: content.rfind(b"\n") + 1]


@contextmanager
def _flocked(lock_path: Path, owner_of: Path) -> Iterator[int]:
    """Hold ``flock(LOCK_EX)`` on ``lock_path`` and yield its descriptor (the pending-write record is read from it).

    Exclusive, not shared: writers take it exclusively, and only an exclusive lock waits for an append in flight.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
        if os.geteuid() == 0:
            # A backup run as root must not leave behind a lock file the gateway's own user cannot open.
            owner = os.stat(owner_of)
            os.fchown(fd, owner.st_uid, owner.st_gid)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _tenant_ids(base_dir: Path) -> list[str]:
    tenants = base_dir / "tenants"
    if not tenants.is_dir():
        return []
    return sorted(entry.name for entry in tenants.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _regular_files(directory: Path) -> list[Path]:
    """Regular files under ``directory``, recursively, in a stable order; hidden files (temp files of atomic
    writes in progress) are skipped."""
    if not directory.is_dir():
        return []
    found: list[Path] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(names) if not name.startswith("."))
    return [path for path in found if path.is_file() and not path.is_symlink()]
