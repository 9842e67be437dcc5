"""The embedded event store: one hash-chained JSON-lines file per tenant under ``BASE_DIR``.

This module writes: the tenant log (appends, quarantine, snapshots, checkpoints) and the store. Where files
live is :mod:`.layout`; reading them and settling a crashed writer's leftovers is :mod:`.reading` (the names of
both stay importable from here). It is a little over 400 lines because the tenant log's writes (append,
quarantine, snapshot, close) are one discipline over the same two descriptors and locks; split, each part would
have to re-state it.

How an append stays atomic, durable and unforked:

* Appends queue up; one flush at a time per log takes every queued batch (group commit), and in an I/O thread
  takes the in-process lock and ``flock(events.lock)``, re-reads the tail if another process grew the file, chains
  the batches onto that head, writes them with one ``write`` and fsyncs once, so all batches in a group share one
  fsync and the event loop never blocks on disk.
* A batch appended with ``expected_seq`` is checked in that same locked section, in group order: it must find the
  head exactly there, counting the batches of its group chained before it. A batch that does not is refused with
  :class:`AppendConflictError` and contributes nothing to the write; the rest of the group is unaffected.
* Before writing, the flush records ``(offset, length, previous hash)`` in ``events.lock`` and clears it after the
  fsync. A writer killed inside ``write`` can leave any prefix of its group, possibly ending exactly on a line
  boundary inside a batch; the next process to take the lock sees the record, finds the file shorter than
  announced and quarantines the whole partial group, so a batch is all there or not at all. A plain torn last line
  (no newline, or not an entry) is quarantined the same way.
* Opening reads the tail from the end of the file, never the whole log; ``entries(from_seq)`` finds its start by
  binary search on the byte offsets (seq is monotonic in the file), or from a snapshot's recorded offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from loguru import logger

from libervia.durable import fsync_dir, replace_durably
from libervia.eventlog.chain import canonical_json
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.group_commit import Entries, PendingAppend
from libervia.eventlog.stores import OpenLogs, QueuedEventLog, chain_group
from libervia.storage import Checkpoint, CorruptStoreError, LogHead, Snapshot, StorageError
from libervia_plugins.storage_files import filesystem_sync
from libervia_plugins.storage_files.layout import FILE_MODE, FileLayout, TenantPaths, ensure_dir, write_all
from libervia_plugins.storage_files.reading import (
    NO_PENDING_WRITE,
    PENDING_WRITE,
    EventLogStats,
    Lines,
    LogFile,
    TailSettlement,
    hash_ending_at,
    last_checkpoint_seq,
    parse_entry,
    parse_lines,
    read_checkpoint_file,
    settle_tail,
)
from libervia_plugins.storage_files.tick_jobs import TickJobs

# Re-exported: these names were defined here before the module was split by job.
__all__ = [
    "NO_PENDING_WRITE", "PENDING_WRITE", "EventLogStats", "FileEventStore", "FileLayout", "FileTenantEventLog",
    "Lines", "LogFile", "TailSettlement", "TenantPaths", "append_checkpoint_file", "hash_ending_at", "parse_entry",
    "parse_lines", "read_checkpoint_file", "settle_tail", "write_all",
]

_SNAPSHOT_NAME = "latest.snapshot"


# --- the checkpoints file --------------------------------------------------------------------------------------

def append_checkpoint_file(path: Path, checkpoint: Checkpoint) -> None:
    """Append one checkpoint durably; the flock keeps two processes' lines whole."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        # A line torn by a crash must not swallow the next checkpoint: start on a fresh line.
        prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        write_all(fd, prefix + canonical_json(checkpoint.as_dict()) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


# --- the tenant log ----------------------------------------------------------------------------------------------

class FileTenantEventLog(QueuedEventLog):
    """One tenant's log file. Get it from :meth:`FileEventStore.open_log`; it implements ``TenantEventLog``."""

    def __init__(self, tenant_id: str, paths: TenantPaths, signer: CheckpointSigner, executor: ThreadPoolExecutor,
                 *, checkpoint_every: int, durable: bool, group_commit: bool,
                 on_close: Callable[[FileTenantEventLog], None], tick_jobs: TickJobs) -> None:
        # The head and the byte offset it ends at, as of our last look (end -1 forces a re-read): one tuple,
        # assigned whole, so a reader on the loop never pairs a new head with an old end. Set before the base
        # class, which assigns ``_head``.
        self._tail: tuple[LogHead, int] = (LogHead(0, None, None), -1)
        super().__init__(tenant_id, on_close=on_close, group_commit=group_commit)
        self.paths = paths
        self.stats = EventLogStats()
        self._signer = signer
        self._executor = executor
        self._tick_jobs = tick_jobs
        self._checkpoint_every = checkpoint_every
        self._durable = durable
        self._fd = -1
        self._lock_fd = -1
        self._file: LogFile
        self._thread_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._fd_lock = threading.Lock()    # held only to duplicate or close the descriptor, never across I/O
        self._last_checkpoint_seq = 0
        # Line starts of seqs we know without searching (a snapshot's next entry), for entries(from_seq).
        self._known_offsets: dict[int, int] = {}

    # -- opening and the tail, all under the lock --

    def open_sync(self) -> None:
        paths = self.paths
        created = not paths.events.exists()
        self._fd = os.open(paths.events, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                           FILE_MODE)
        self._lock_fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        if created:
            fsync_dir(paths.eventlog_dir)
        self._file = LogFile(self._fd, self.stats)
        if paths.quarantine.is_dir():
            self._health.quarantined = sum(1 for _ in paths.quarantine.glob("*.jsonl"))
        with self._locked():
            self._sync_tail_locked()
        self._last_checkpoint_seq = last_checkpoint_seq(paths.checkpoints, self.tenant_id)
        self._health.last_append_at = self._head.last_append_at

    @property
    def _head(self) -> LogHead:
        return self._tail[0]

    @_head.setter
    def _head(self, head: LogHead) -> None:
        self._tail = (head, self._tail[1])

    @property
    def _end(self) -> int:
        return self._tail[1]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_for_group()
        try:
            yield
        finally:
            self._unlock_after_group()

    def _sync_tail_locked(self) -> None:
        """Make ``_head`` the file's real last entry, quarantining whatever a crashed writer left half-written."""
        size = os.fstat(self._fd).st_size
        if size == self._end:
            return
        tail = settle_tail(self._file, self._lock_fd, size)
        if tail.group_cut is not None:
            self._quarantine(tail.group_cut, size, "a group write interrupted by a crash")
            size = tail.group_cut
        os.pwrite(self._lock_fd, NO_PENDING_WRITE, 0)
        if tail.end < size:
            self._quarantine(tail.end, size, "a torn or unreadable last line")
        head_entry = tail.head_entry
        head = LogHead(0, None, None) if head_entry is None else LogHead(head_entry["seq"], head_entry["hash"],
                                                                          head_entry["ts"])
        self._tail = (head, tail.end)

    def _hash_ending_at(self, offset: int) -> str | None:
        return hash_ending_at(self._file, offset)

    def _quarantine(self, start: int, end: int, why: str) -> None:
        data = self._file.pread(start, end - start)
        ensure_dir(self.paths.quarantine)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time_ns() // 1_000_000 % 1000:03d}Z"
        target = self.paths.quarantine / f"{stamp}-{os.getpid()}-{os.urandom(3).hex()}.jsonl"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.paths.quarantine)
        # Only once the bytes are safely kept elsewhere do they leave the log.
        os.ftruncate(self._fd, start)
        os.fsync(self._fd)
        self._health.quarantined += 1
        self.stats.quarantines += 1
        logger.warning("event log of tenant {} held {} ({} bytes at offset {}): moved to {}",
                       self.tenant_id, why, len(data), start, target)

    # -- appending --

    async def _write_group(self, batches: list[PendingAppend]) -> list[Entries | Exception]:
        result: list[Entries | Exception] = await self._tick_jobs.run(_FileGroupWrite(self, batches))
        return result

    def _lock_for_group(self, *, wait: bool = True) -> bool:
        """Take the thread lock and the flock (released by :meth:`_unlock_after_group`); without ``wait``, only if
        both are free at once (False: nothing is held). flock excludes other processes; it is per open file, so
        threads of this process need their own lock."""
        if not self._thread_lock.acquire(blocking=wait):
            return False
        try:
            if self._fd < 0:
                raise StorageError(f"the event log of tenant {self.tenant_id} is closed")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def _unlock_after_group(self) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _roll_back(self, offset: int) -> None:
        """Take a failed group's bytes back out so that a failed append leaves nothing behind."""
        try:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
            os.pwrite(self._lock_fd, NO_PENDING_WRITE, 0)
        except OSError as exc:
            # The pending-write record stays, so the next writer quarantines what is left.
            logger.error("could not roll back a failed append for tenant {}: {}", self.tenant_id, exc)
            self._tail = (self._head, -1)

    def _checkpoint_locked(self) -> None:
        head = self._head
        if head.hash is None or head.seq <= self._last_checkpoint_seq:
            return
        try:
            append_checkpoint_file(self.paths.checkpoints, self._signer.sign(self.tenant_id, head.seq, head.hash))
        except OSError as exc:
            self._health.error_count += 1
            logger.error("could not store a checkpoint for tenant {}: {}", self.tenant_id, exc)
            return
        self._last_checkpoint_seq = head.seq
        self.stats.checkpoints += 1

    # -- reading --

    async def head(self) -> LogHead:
        # The Core asks for the head before nearly every command; when no group of ours is being written and the
        # file is exactly as long as when we last settled it, nobody appended since, and that head is the one
        # the lock would give. One fstat here saves a hop through the I/O threads (a wake-up and two GIL
        # hand-offs per command). The head and its end are read as one tuple, before the size.
        # (The descriptor is closed only after close() set _closing, on this loop, with no await in between.)
        if self._fd >= 0 and self._queue.idle and not self._closing:
            head, end = self._tail
            if end >= 0 and os.fstat(self._fd).st_size == end:
                return head
        return await self._run(self._head_sync)

    def _head_sync(self) -> LogHead:
        return self._settled_tail()[0]

    def _settled_tail(self) -> tuple[LogHead, int]:
        """The head and the end of what is durable: under the lock, no group of ours or another process's is
        between its write and its sync (a reader bounded by this end never serves bytes a failed sync takes back)."""
        with self._locked():
            self._sync_tail_locked()
            return self._tail

    def _reader(self) -> LogFile:
        """A view of the file on a descriptor of its own, closed by the caller. A long read (verify, an events
        page) can then outlive a close of the log (an eviction, a purge): it neither fails on a closed descriptor
        nor reads through a number the kernel has since given to another file."""
        with self._fd_lock:   # not the thread lock: a group write holds that through its sync
            if self._fd < 0:
                raise StorageError(f"the event log of tenant {self.tenant_id} is closed")
            return LogFile(os.dup(self._fd), self.stats)

    async def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        view = self._reader()
        try:
            head, end = await self._run(self._settled_tail)
            if from_seq == head.seq + 1:
                pos = end
            elif from_seq in self._known_offsets:
                pos = self._known_offsets[from_seq]
            else:
                pos = await self._run(view.line_start_for_seq, from_seq, end)
            while pos < end:
                chunk = await self._run(view.read_lines, pos, end)
                try:
                    for entry in parse_lines(chunk):
                        seq = entry.get("seq")
                        if to_seq is not None and isinstance(seq, int) and seq > to_seq:
                            return
                        yield entry
                except CorruptStoreError as exc:
                    raise CorruptStoreError(f"event log of tenant {self.tenant_id}: {exc}") from None
                pos = chunk.next_offset
        finally:
            os.close(view.fd)

    async def stored_lines(self, from_seq: int = 1) -> AsyncIterator[list[bytes]]:
        """The stored lines from ``from_seq`` on, a read's worth at a time, exactly as written (no newline).

        Verification uses this instead of :meth:`entries` to hash the bytes on disk directly.
        """
        view = self._reader()
        try:
            end = (await self._run(self._settled_tail))[1]
            pos = 0 if from_seq <= 1 else await self._run(view.line_start_for_seq, from_seq, end)
            while pos < end:
                chunk = await self._run(view.read_lines, pos, end)
                if chunk.lines:
                    yield chunk.lines
                pos = chunk.next_offset
        finally:
            os.close(view.fd)

    async def size_bytes(self) -> int:
        return await self._run(self._file.size)

    # -- snapshots --

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._run(self._save_snapshot_sync, snapshot)

    def _save_snapshot_sync(self, snapshot: Snapshot) -> None:
        end = self._file.size()
        head, known_end = self._tail
        if snapshot.seq == head.seq and snapshot.hash == head.hash and known_end >= 0:
            offset = known_end
        else:
            start = self._file.line_start_for_seq(snapshot.seq, end)
            line = self._file.line_at(start, end)
            entry = parse_entry(line) if line is not None else None
            if line is None or entry is None or entry["seq"] != snapshot.seq or entry["hash"] != snapshot.hash:
                raise ValueError(f"snapshot at seq {snapshot.seq} does not match the log of tenant "
                                 f"{self.tenant_id}")
            offset = start + len(line) + 1
        header = canonical_json({
            "tenant": self.tenant_id, "seq": snapshot.seq, "hash": snapshot.hash, "offset": offset,
            "stateBytes": len(snapshot.state), "stateSha256": hashlib.sha256(snapshot.state).hexdigest(),
        })
        ensure_dir(self.paths.snapshots)
        with self._snapshot_lock:  # the temp file name is per process, so one writer per process at a time
            replace_durably(self.paths.snapshots / _SNAPSHOT_NAME, header + b"\n" + snapshot.state)
        self._known_offsets[snapshot.seq + 1] = offset

    async def load_snapshot(self) -> Snapshot | None:
        return await self._run(self._load_snapshot_sync)

    def _load_snapshot_sync(self) -> Snapshot | None:
        path = self.paths.snapshots / _SNAPSHOT_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        self.stats.bytes_read += len(data)
        header_line, _, state = data.partition(b"\n")
        try:
            header = orjson.loads(header_line)
            seq, hash_, offset = header["seq"], header["hash"], header["offset"]
            intact = (header["tenant"] == self.tenant_id and header["stateBytes"] == len(state)
                      and header["stateSha256"] == hashlib.sha256(state).hexdigest()
                      and isinstance(offset, int) and 0 < offset <= self._file.size())
        except (orjson.JSONDecodeError, KeyError, TypeError):
            intact = False
        if not intact:
            logger.warning("snapshot of tenant {} is damaged; the log will be replayed from genesis", self.tenant_id)
            return None
        # The snapshot is only usable if the log still holds the very entry it was taken at.
        if self._hash_ending_at(offset) != hash_ or self._seq_ending_at(offset) != seq:
            logger.warning("snapshot of tenant {} (seq {}) does not match the log; ignoring it", self.tenant_id, seq)
            return None
        self._known_offsets[seq + 1] = offset
        return Snapshot(seq=seq, hash=hash_, state=state)

    def _seq_ending_at(self, offset: int) -> int | None:
        last = self._file.last_line(offset)
        entry = parse_entry(last[1]) if last is not None and last[2] else None
        return entry["seq"] if entry is not None else None

    # -- closing --

    async def _close_io(self) -> None:
        await self._run(self._close_sync)

    def _close_sync(self) -> None:
        try:
            if self.discarding:
                return  # purged: these paths may be a new tenant's now; only the descriptors are released
            with self._locked():
                self._sync_tail_locked()
                self._last_checkpoint_seq = max(self._last_checkpoint_seq,
                                                last_checkpoint_seq(self.paths.checkpoints, self.tenant_id))
                self._checkpoint_locked()
        finally:
            with self._thread_lock, self._fd_lock:
                os.close(self._fd)
                os.close(self._lock_fd)
                self._fd = self._lock_fd = -1

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)


class _FileGroupWrite:
    """One group of a file log, written in the steps of :class:`~.tick_jobs.GroupWrite`: between
    :meth:`begin` and :meth:`finish` the log is locked, its bytes are written and the pending-write record in
    ``events.lock`` names them, so a crash before the sync leaves a group the next writer quarantines."""

    def __init__(self, log: FileTenantEventLog, batches: list[PendingAppend]) -> None:
        self.log = log
        self.batches = batches
        self.order = log.tenant_id
        self.sync_fd = -1
        self._results: list[Entries | Exception] = []
        self._group: Any = None
        self._offset = 0
        self._length = 0

    def begin(self, *, wait: bool) -> bool | None:
        log = self.log
        if not log._lock_for_group(wait=wait):
            return None
        try:
            log._sync_tail_locked()
            group = chain_group(log.tenant_id, log._head, self.batches)
            self._results = group.results
            if not group.lines:
                log._unlock_after_group()
                return False
            data = b"\n".join(group.lines) + b"\n"
            self._group, self._offset, self._length = group, log._end, len(data)
            try:
                os.pwrite(log._lock_fd, PENDING_WRITE.pack(self._offset, len(data), (group.start.hash or "").encode()),
                          0)
                write_all(log._fd, data)
            except OSError as exc:
                log._roll_back(self._offset)
                raise StorageError(f"append to the event log of tenant {log.tenant_id} failed: {exc}") from exc
        except BaseException:
            log._unlock_after_group()   # nothing was left written (rolled back): no finish follows
            raise
        self.sync_fd = log._fd
        if not log._durable:
            try:
                self._complete()
            finally:
                log._unlock_after_group()
            return False
        return True

    def sync_alone(self) -> None:
        os.fsync(self.log._fd)

    def finish(self, failure: BaseException | None) -> list[Entries | Exception]:
        if self._group is None or self.sync_fd < 0 or not self.log._durable:
            return self._results  # answered in begin (nothing to sync, or a store without fsync)
        log = self.log
        try:
            if failure is not None:
                log._roll_back(self._offset)
                raise StorageError(f"append to the event log of tenant {log.tenant_id} failed: {failure}") from failure
            log.stats.fsyncs += 1
            try:
                os.pwrite(log._lock_fd, NO_PENDING_WRITE, 0)
            except OSError as exc:
                log._roll_back(self._offset)
                raise StorageError(f"append to the event log of tenant {log.tenant_id} failed: {exc}") from exc
            self._complete()
        finally:
            log._unlock_after_group()
        return self._results

    def _complete(self) -> None:
        """The group is durable (or the store does not sync): the log's head and counters move past it."""
        log, group = self.log, self._group
        log._tail = (group.head, self._offset + self._length)
        log.stats.writes += 1
        log.stats.bytes_written += self._length
        for entries in group.accepted():
            log.stats.appends += 1
            log.stats.events += len(entries)
        log._health.degraded = False
        log._health.last_append_at = group.head.last_append_at
        if group.crosses_checkpoint(log._checkpoint_every):
            log._checkpoint_locked()


class FileEventStore:
    """The embedded ``EventStore`` on ``BASE_DIR``.

    ``checkpoint_every``: sign a checkpoint whenever an append crosses a multiple of it (and on close).
    ``durable=False`` skips the fsync and ``group_commit=False`` writes one batch per fsync: both exist only so
    that ``bench/eventlog_bench.py`` can measure what durability and group commit cost. Never use them otherwise.
    """

    def __init__(self, base_dir: Path, signer: CheckpointSigner, checkpoint_every: int = 1000, *,
                 durable: bool = True, group_commit: bool = True, io_threads: int = 8) -> None:
        self.layout = FileLayout(base_dir)
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self._durable = durable
        self._group_commit = group_commit
        self._executor = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="libervia-eventlog")
        # Waits for logs another process holds block a thread each, with no time limit: in threads of their own,
        # so that a few such logs cannot take every I/O thread from the other tenants.
        self._lock_waits = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="libervia-eventlog-wait")
        # Shared by every log, so that their groups share hand-offs (and one syncfs, where it can be trusted).
        self._tick_jobs = TickJobs(self._executor, self._lock_waits,
                                   one_in_flight=durable and filesystem_sync.covers_directory(self.layout.base_dir))
        self._logs: OpenLogs[FileTenantEventLog] = OpenLogs()

    async def open_log(self, tenant_id: str) -> FileTenantEventLog:
        return await self._logs.open(tenant_id, lambda: self._open(tenant_id))

    async def _open(self, tenant_id: str) -> FileTenantEventLog:
        try:
            paths = await self._run(lambda: self.layout.tenant(tenant_id, create=True))
        except ValueError as exc:  # a symlinked or escaping tenant directory: an operator must look
            raise StorageError(f"tenant {tenant_id}: {exc}") from exc
        log = FileTenantEventLog(tenant_id, paths, self.signer, self._executor,
                                 checkpoint_every=self.checkpoint_every, durable=self._durable,
                                 group_commit=self._group_commit, on_close=self._logs.forget,
                                 tick_jobs=self._tick_jobs)
        await self._run(log.open_sync)
        return log

    async def tenant_ids(self) -> list[str]:
        return await self._run(self.layout.tenants_with_logs)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        def save() -> None:
            paths = self.layout.tenant(checkpoint.tenant, create=True)
            append_checkpoint_file(paths.checkpoints, checkpoint)

        await self._run(save)

    async def checkpoints(self, tenant_id: str) -> list[Checkpoint]:
        def read() -> list[Checkpoint]:
            return read_checkpoint_file(self.layout.tenant(tenant_id, create=False).checkpoints)

        return await self._run(read)

    async def close(self) -> None:
        """Close every open log (each signs a final checkpoint) and stop the I/O threads."""
        await self._logs.close_all()
        self._lock_waits.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
