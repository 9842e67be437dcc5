"""Loading another store's entries into ``BASE_DIR`` (the store's side of ``libervia restore`` and ``migrate``).

A tenant's log is written whole to a hidden temporary file, fsynced and renamed into place, so an interrupted
import leaves either the complete log or none; re-running it finds the complete logs and skips them. A log that
already holds a prefix of the entries (a gateway appended nothing else since) gets the rest appended under its
lock, exactly as an append would write them.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from libervia.durable import fsync_dir
from libervia.eventlog.chain import canonical_json, encode_line
from libervia.storage import Checkpoint, StorageError, entries_past_head
from libervia_plugins.storage_files.eventlog import (
    FileEventStore,
    append_checkpoint_file,
    read_checkpoint_file,
    write_all,
)

_FILE_MODE = 0o640
_WRITE_CHUNK = 1 << 20


async def import_log(events: FileEventStore, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                     checkpoints: Sequence[Checkpoint]) -> int:
    try:
        paths = events.layout.tenant(tenant_id, create=True)
    except ValueError as exc:
        raise StorageError(f"tenant {tenant_id}: {exc}") from exc
    present = paths.events.exists() and paths.events.stat().st_size > 0
    head_seq, head_hash = 0, None
    if present:
        log = await events.open_log(tenant_id)  # settles a torn tail the way the gateway would
        try:
            head = await log.head()
        finally:
            await log.close()
        head_seq, head_hash = head.seq, head.hash

    with _log_writer(paths.events, present) as write:
        added = await _write_new_entries(tenant_id, entries, head_seq, head_hash, write)

    held = {canonical_json(cp.as_dict()) for cp in read_checkpoint_file(paths.checkpoints)}
    for checkpoint in checkpoints:
        if canonical_json(checkpoint.as_dict()) not in held:
            append_checkpoint_file(paths.checkpoints, checkpoint)
    return added


async def _write_new_entries(tenant_id: str, entries: AsyncIterator[dict[str, Any]], head_seq: int,
                             head_hash: str | None, write: Callable[[bytes], None]) -> int:
    added, buffered, buffer = 0, 0, []
    async for entry in entries_past_head(tenant_id, entries, head_seq, head_hash):
        line = encode_line(entry)
        buffer.append(line)
        buffered += len(line)
        added += 1
        if buffered >= _WRITE_CHUNK:
            write(b"".join(buffer))
            buffer, buffered = [], 0
    write(b"".join(buffer))
    return added


@contextmanager
def _log_writer(events_path: Path, present: bool) -> Iterator[Callable[[bytes], None]]:
    """Where the imported lines go, durably on a clean exit.

    No log yet: a hidden file beside it, renamed into place once complete (an interrupted import leaves no log).
    A log already there: appended to under ``events.lock``, the lock every writer takes.
    """
    directory = events_path.parent
    if not present:
        tmp = directory / f".import-{os.urandom(4).hex()}.jsonl"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        try:
            yield lambda data: write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(tmp, events_path)
        fsync_dir(directory)
        return
    lock_fd = os.open(directory / "events.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        fd = os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            yield lambda data: write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(lock_fd)
