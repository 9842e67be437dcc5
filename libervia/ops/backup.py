"""``libervia backup``: a consistent, signed backup of ``BASE_DIR`` taken while the gateway keeps serving.

Consistency without stopping writers rests on two facts of the embedded storage:

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
import io
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from libervia import __version__
from libervia.clock import format_iso
from libervia.durable import exclusive_lock, fsync_dir
from libervia.ops.archive import (
    FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    CountingReader,
    byte_progress,
    data_member,
    sign_manifest,
)

# The embedded store owns the log format on disk; the backup reads it with the store's own primitives.
from libervia_plugins.storage_files.eventlog import EventLogStats, LogFile, settle_tail

REGISTRY_FILES = ("config/tenants.json", "config/key_usage.json")
REGISTRY_LOCK = "config/tenants.lock"
# Crash leftovers are a line or one group write; far more than that after the last entry is damage for a human.
_MAX_UNSETTLED_TAIL = 64 * 1024 * 1024


class BackupError(Exception):
    """The backup cannot be taken (not a BASE_DIR, unreadable files)."""


def default_output_dir(base_dir: Path) -> Path:
    """``BASE_DIR/../backups``: beside the data, never inside it, so a restore of BASE_DIR cannot clobber it."""
    return base_dir.resolve().parent / "backups"


def run_backup(base_dir: Path, output_dir: Path, key: bytes, progress: bool) -> Path:
    """Write ``libervia-backup-<UTC time>.tar.gz`` into ``output_dir`` and return its path.

    The archive appears under its final name only once it is complete and fsynced; a failed or interrupted
    backup leaves no archive behind.
    """
    base_dir = base_dir.resolve()
    if not (base_dir / "config").is_dir() and not (base_dir / "tenants").is_dir():
        raise BackupError(f"{base_dir} is not a Libervia BASE_DIR (it has neither config/ nor tenants/)")
    output_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)

    fd, tmp_name = tempfile.mkstemp(prefix=".libervia-backup-", suffix=".partial", dir=output_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with byte_progress("backup", _estimate_bytes(base_dir), progress) as bar:
                _write_archive(raw, base_dir, key, bar, format_iso(started))
            raw.flush()
            os.fsync(raw.fileno())
        return _publish(tmp, output_dir, started)
    finally:
        tmp.unlink(missing_ok=True)


class _ArchiveWriter:
    """Streams captured files into the tar, hashing each one for the manifest."""

    def __init__(self, tar: tarfile.TarFile, base_dir: Path, bar: tqdm[Any]):
        self._tar = tar
        self._base_dir = base_dir
        self._bar = bar
        self.files: list[dict[str, Any]] = []

    def add(self, path: Path, source: BinaryIO, size: int) -> None:
        relpath = path.relative_to(self._base_dir).as_posix()
        reader = CountingReader(source, self._bar, limit=size)
        self._tar.addfile(_member(data_member(relpath), size), reader)
        self.files.append({"path": relpath, "size": size, "sha256": reader.sha256.hexdigest()})

    def add_bytes(self, path: Path, content: bytes) -> None:
        self.add(path, io.BytesIO(content), len(content))

    def add_file(self, path: Path) -> None:
        try:
            source = path.open("rb")
        except FileNotFoundError:
            return  # superseded (a newer snapshot replaced it) between listing and opening; nothing lost
        with source:
            self.add(path, source, os.fstat(source.fileno()).st_size)

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
                    raise BackupError(f"tenant {tenant}: {size - end} bytes after the last readable entry; "
                                      "verify the log (PROC-007) before backing it up")
                unsettled = view.pread(end, size - end)
            if unsettled:
                _warn(f"tenant {tenant}: {len(unsettled)} bytes after the last whole entry (left by a crashed "
                      "writer) archived under eventlog/quarantine/, as the gateway would")
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                self.add_bytes(log.parent / "quarantine" / f"{stamp}-backup-{os.urandom(3).hex()}.jsonl",
                               unsettled)
            source.seek(0)
            self.add(log, source, end)
        if head is None:
            return {"seq": 0, "hash": None}
        return {"seq": head["seq"], "hash": head["hash"]}


def _write_archive(raw: BinaryIO, base_dir: Path, key: bytes, bar: tqdm[Any], created_at: str) -> None:
    chains: dict[str, dict[str, Any]] = {}
    # Level 6 compresses JSON lines nearly as well as 9 at a fraction of the CPU the gateway is also using.
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        writer = _ArchiveWriter(tar, base_dir, bar)
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

        manifest = orjson.dumps(
            {"format": FORMAT, "created_at": created_at, "version": __version__, "base_dir": str(base_dir),
             "files": writer.files, "chains": chains},
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
        signature = (sign_manifest(manifest, key) + "\n").encode()
        tar.addfile(_member(MANIFEST_NAME, len(manifest)), io.BytesIO(manifest))
        tar.addfile(_member(SIGNATURE_NAME, len(signature)), io.BytesIO(signature))


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


def _estimate_bytes(base_dir: Path) -> int:
    candidates = [*_regular_files(base_dir / "checkpoints"), *_regular_files(base_dir / "tenants"),
                  *(base_dir / rel for rel in REGISTRY_FILES)]
    total = 0
    for path in candidates:
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o640
    info.mtime = int(time.time())
    return info


def _publish(tmp: Path, output_dir: Path, started: datetime) -> Path:
    """Give the finished archive its final name without ever replacing an existing backup."""
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        final = output_dir / f"libervia-backup-{stamp}{suffix}.tar.gz"
        try:
            os.link(tmp, final)  # unlike rename, link refuses to overwrite
        except FileExistsError:
            continue
        fsync_dir(output_dir)
        return final
    raise BackupError(f"could not find a free archive name in {output_dir}")


def _warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)
