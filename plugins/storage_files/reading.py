"""Reading the embedded store's files: positional reads of a log, parsing lines, the checkpoints file, and the
settlement rule for what a crashed writer left behind (see :func:`settle_tail`).

Everything here only reads, so ``libervia verify`` and backups use it on a log another process may be writing.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from libervia.eventlog.chain import has_entry_shape
from libervia.eventlog.checkpoints import checkpoint_from_dict, checkpoints_from_lines
from libervia.storage import Checkpoint, CorruptStoreError

_READ_CHUNK = 1 << 20        # entries() and verification read this much per I/O call
_BACK_CHUNK = 8192           # reading the last line backwards from the end
_SCAN_WINDOW = 64 * 1024     # binary search stops here and scans lines
_MAX_TAIL_REPAIR_LINES = 10_000


# --- reading the log file ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class EventLogStats:
    """I/O counters of one log, for tests and benchmarks (not exported as metrics)."""

    appends: int = 0        # batches acknowledged
    events: int = 0         # entries acknowledged
    writes: int = 0         # group writes (one write call each)
    fsyncs: int = 0         # fsyncs of events.jsonl
    bytes_written: int = 0
    bytes_read: int = 0     # every byte read from events.jsonl and the snapshot
    checkpoints: int = 0    # checkpoints signed and stored
    quarantines: int = 0    # torn tails moved aside by this process


class Lines(NamedTuple):
    """Complete lines read from ``start``; ``next_offset`` is where the next read begins."""

    start: int
    lines: list[bytes]
    next_offset: int


class LogFile:
    """Positional reads of an events file (``pread`` only, so threads can share the descriptor)."""

    def __init__(self, fd: int, stats: EventLogStats) -> None:
        self.fd = fd
        self.stats = stats

    @classmethod
    @contextlib.contextmanager
    def open_readonly(cls, path: Path) -> Iterator[LogFile]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            yield cls(fd, EventLogStats())
        finally:
            os.close(fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        self.stats.bytes_read += len(data)
        return data

    def last_line(self, end: int) -> tuple[int, bytes, bool] | None:
        """``(start, line without newline, terminated)`` of the line that ends at byte ``end``; None if empty."""
        if end <= 0:
            return None
        terminated = self.pread(end - 1, 1) == b"\n"
        pos = stop = end - 1 if terminated else end
        pieces: list[bytes] = []
        start = 0
        while pos > 0:
            size = min(_BACK_CHUNK, pos)
            data = self.pread(pos - size, size)
            cut = data.rfind(b"\n")
            if cut >= 0:
                pieces.append(data[cut + 1:])
                start = pos - size + cut + 1
                break
            pieces.append(data)
            pos -= size
        line = b"".join(reversed(pieces))
        assert start + len(line) == stop
        return start, line, terminated

    def line_at(self, start: int, end: int) -> bytes | None:
        """The complete line starting at ``start`` (without newline), or None if it is not terminated by ``end``."""
        pieces: list[bytes] = []
        pos = start
        while pos < end:
            data = self.pread(pos, min(4096, end - pos))
            cut = data.find(b"\n")
            if cut >= 0:
                pieces.append(data[:cut])
                return b"".join(pieces)
            pieces.append(data)
            pos += len(data)
        return None

    def _next_line_start(self, pos: int, end: int) -> int:
        if pos == 0:
            return 0
        while pos < end:
            data = self.pread(pos - 1, min(4096, end - pos + 1))
            cut = data.find(b"\n")
            if cut >= 0:
                return pos - 1 + cut + 1
            pos += len(data) - 1
        return end

    def _seq_at(self, start: int, end: int) -> int | None:
        line = self.line_at(start, end)
        entry = parse_entry(line) if line is not None else None
        return entry["seq"] if entry is not None else None

    def line_start_for_seq(self, seq: int, end: int) -> int:
        """Offset of the first line whose seq is ``>= seq`` (``end`` if none), by binary search then a short scan.

        Only a log whose seqs increase along the file can be searched; when a probe lands on something unreadable
        the search falls back to scanning from the last good position, so a damaged log still gets an answer.
        """
        if seq <= 1 or end <= 0:
            return 0
        lo, hi = 0, end
        while hi - lo > _SCAN_WINDOW:
            mid = (lo + hi) // 2
            start = self._next_line_start(mid, hi)
            if start >= hi:
                hi = mid
                continue
            found = self._seq_at(start, end)
            if found is None:
                break
            if found < seq:
                lo = start
            else:
                hi = start
        pos = lo
        while pos < end:
            line = self.line_at(pos, end)
            if line is None:
                return end
            entry = parse_entry(line)
            if entry is not None and entry["seq"] >= seq:
                return pos
            pos += len(line) + 1
        return end

    def read_lines(self, start: int, end: int) -> Lines:
        """The complete lines in ``[start, end)``, about one read's worth (more if one line is longer).

        Lines stay bytes: callers parse them one at a time as they consume them, which keeps no more than one
        parsed entry alive at once (retaining a chunk of parsed entries costs more than parsing them).
        """
        data = self.pread(start, min(_READ_CHUNK, end - start))
        cut = data.rfind(b"\n")
        while cut < 0 and start + len(data) < end:  # a line longer than one read
            more = self.pread(start + len(data), min(_READ_CHUNK, end - start - len(data)))
            found = more.rfind(b"\n")
            cut = len(data) + found if found >= 0 else -1
            data += more
        if cut < 0:
            return Lines(start, [], end)  # only a torn tail is left
        return Lines(start, data[:cut].split(b"\n"), start + cut + 1)

    def iter_lines(self, start: int, end: int) -> Iterator[Lines]:
        """Every complete line in ``[start, end)``, one read at a time."""
        pos = start
        while pos < end:
            chunk = self.read_lines(pos, end)
            yield chunk
            pos = chunk.next_offset

    def torn_tail_bytes(self, end: int) -> int:
        last = self.last_line(end)
        return len(last[1]) if last is not None and not last[2] else 0


def parse_lines(chunk: Lines) -> Iterator[dict[str, Any]]:
    offset = chunk.start
    loads = orjson.loads
    for line in chunk.lines:
        try:
            entry = loads(line)
        except orjson.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            raise CorruptStoreError(f"unparsable line at byte offset {offset}")
        yield entry
        offset += len(line) + 1


def parse_entry(line: bytes) -> dict[str, Any] | None:
    """The entry on ``line`` if it has the shape of one (enough to trust its seq and hash as the head)."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if (has_entry_shape(entry) and isinstance(entry["seq"], int) and entry["seq"] >= 1
            and isinstance(entry["hash"], str) and isinstance(entry["ts"], str)):
        return entry
    return None



# --- checkpoints file --------------------------------------------------------------------------------------------

def read_checkpoint_file(path: Path) -> list[Checkpoint]:
    """Checkpoints stored at ``path`` in file order; records that are not checkpoints are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return checkpoints_from_lines(data)

def last_checkpoint_seq(path: Path, tenant: str) -> int:
    try:
        with LogFile.open_readonly(path) as f:
            last = f.last_line(f.size())
    except FileNotFoundError:
        return 0
    if last is not None and last[2]:
        checkpoint = None
        with contextlib.suppress(orjson.JSONDecodeError):
            checkpoint = checkpoint_from_dict(orjson.loads(last[1]))
        if checkpoint is not None and checkpoint.tenant == tenant:
            return checkpoint.seq
    return max((cp.seq for cp in read_checkpoint_file(path) if cp.tenant == tenant), default=0)

# --- the pending-write record in events.lock ---------------------------------------------------------------------

PENDING_WRITE = struct.Struct(">QQ64s")  # offset, length, ascii hash of the entry before offset (zeros for genesis)
NO_PENDING_WRITE = bytes(PENDING_WRITE.size)


# --- settling a crashed writer's leftovers ----------------------------------------------------------------------

class TailSettlement(NamedTuple):
    group_cut: int | None          # where an interrupted group write starts, if one is found
    end: int                       # where the log ends once leftovers are set aside
    head_entry: dict[str, Any] | None


def settle_tail(view: LogFile, lock_fd: int, size: int) -> TailSettlement:
    """Where the log ends once a crashed writer's leftovers are set aside; reads only, under ``events.lock``.

    The one rule, used by the store before it appends and by backups before they copy: a pending-write record in
    ``events.lock`` whose group is only partly in the file cuts the log at the group's start; then unterminated or
    unreadable last lines are cut. Everything before ``end`` is never rewritten.
    """
    group_cut = None
    record = os.pread(lock_fd, PENDING_WRITE.size, 0)
    if len(record) == PENDING_WRITE.size and record != NO_PENDING_WRITE:
        offset, length, prev = PENDING_WRITE.unpack(record)
        prev_hash = prev.rstrip(b"\0").decode("ascii", "replace") or None
        if offset < size < offset + length and hash_ending_at(view, offset) == prev_hash:
            group_cut = size = offset
    cut = size
    for _ in range(_MAX_TAIL_REPAIR_LINES):
        last = view.last_line(cut)
        if last is None:
            return TailSettlement(group_cut, cut, None)
        start, line, terminated = last
        entry = parse_entry(line) if terminated else None
        if entry is not None:
            return TailSettlement(group_cut, cut, entry)
        cut = start
    raise CorruptStoreError(f"the event log ends in more than {_MAX_TAIL_REPAIR_LINES} unreadable lines")


def hash_ending_at(view: LogFile, offset: int) -> str | None:
    """The hash of the entry that ends at ``offset`` (None at the start, "?" for an unreadable line)."""
    last = view.last_line(offset)
    if last is None:
        return None
    entry = parse_entry(last[1]) if last[2] else None
    return entry["hash"] if entry is not None else "?"
