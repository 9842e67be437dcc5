"""The tenant's records on disk: an SQLite index beside the event log, so the Core's memory holds live state only.

The log is the truth; this index is a cache of the projection that can always be rebuilt from it. It holds three
tables:

- ``records``: every record (situation, episode, contract, mandate...) as the projection last left it, one row per
  *version*, found by ``(kind, id, seq)`` where seq is that of the last event that changed the record, so a reader
  whose state is at seq ``P`` takes the newest version at or before ``P``. Rows are appended in rowid order and
  only the index on ``(kind, id, seq)`` takes random ids: a flush of a thousand records then costs a third of
  what it costs with the rows themselves keyed by id. Versions are deterministic (the same log gives the same
  record at the same seq), which is what lets several processes serving one tenant share one index file without
  coordinating: each writes what it folded, and a row another process wrote is exactly the row it would have
  written. Rows are also indexed by ``(kind, ord)``, the record's creation order, so that a page of a list
  (mandates, review cases, consequences) reads the page (:meth:`RecordIndex.listing_page`): about 3,400 more
  instructions per row written, measured under callgrind, against a sort of the whole kind per page.
- ``history``: a mandate's history entries, one row each, so a mandate with a long history is not rewritten.
- ``states``: the compact rest of the state (head, counters, indexes by agent...) at the seq of each flush,
  written in the same transaction as the records it goes with.

A flush writes everything a process changed up to its seq ``F``, so an index holding a state row at ``F`` holds
every record version up to ``F``. A state row is only trusted if the log's entry at its seq has its hash; a row
beyond the log's head, or one that does not match, means the log was replaced (a restore) and the index is
rebuilt from the log. The file is named after the hash of the log's first entry, so a purged tenant id that is
created again never reads its predecessor's index.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from loguru import logger

from libervia.storage import StorageError

FORMAT = "4"   # 4: records_by_order (an index of an older format is rebuilt from the log)
# The index is a cache: a page cache of its own per tenant would multiply by the number of tenants.
CACHE_KIB = 256

# The newest version (at or before a seq) of each record of a kind; then the parts a page or a count adds: the
# records left out (a JSON list of ids), a field's value, the creation order and the page's bounds.
_LATEST = ("FROM records r WHERE r.kind = ? AND r.seq = (SELECT MAX(v.seq) FROM records v WHERE v.kind = r.kind "
           "AND v.id = r.id AND v.seq <= ?) ")
_LEFT_OUT = "AND r.id NOT IN (SELECT value FROM json_each(?)) "
_WHERE = "AND json_extract(CAST(r.body AS TEXT), ?) = ? "
_IN_ORDER = "ORDER BY r.ord, r.id "
_ROWS = "SELECT r.id, r.ord, r.body " + _LATEST
_COUNT = "SELECT COUNT(*) " + _LATEST + _LEFT_OUT + _WHERE
_PAGE_BOUNDS = "LIMIT ? OFFSET ?"


def _json_list(values: Collection[str]) -> str:
    return orjson.dumps(list(values)).decode()


_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    ord INTEGER NOT NULL, body BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_id ON records (kind, id, seq);
CREATE INDEX IF NOT EXISTS records_by_order ON records (kind, ord);
CREATE TABLE IF NOT EXISTS history (owner TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (owner, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, body BLOB NOT NULL);
"""


class RecordRow(NamedTuple):
    """A tuple, so that a flush hands its rows to SQLite as they are (a thousand per flush)."""

    kind: str
    id: str
    seq: int     # the event that last changed it
    ord: int     # the event that created it: listings keep creation order
    body: bytes


@dataclass(frozen=True, slots=True)
class StateRow:
    seq: int
    hash: str
    body: bytes


class IndexUnusableError(StorageError):
    """The index file cannot be used (unreadable, another format, another log). At a Core's start it is rebuilt
    from the log; during a request the request fails with 503, as for any storage the gateway cannot read."""


class RecordIndex:
    """One tenant's index file (or a private temporary one when ``directory`` is None).

    The file is opened on first use, because its name needs the log's first entry. Reads run on the caller's
    thread (point lookups by primary key); :meth:`write` may run in a worker thread. The Core serialises every
    call under its lock, so one connection serves both. An idle tenant lets its connection go (:meth:`release`):
    an open SQLite file costs about 165 KB and three descriptors, which a thousand mostly idle tenants cannot each
    keep; the next call opens it again. A busy one keeps it: opening and closing around every flush (closing
    checkpoints the WAL) cost a fifth more CPU per decision.
    """

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._db: sqlite3.Connection | None = None
        self._genesis: str | None = None

    @property
    def path(self) -> Path | None:
        if self._directory is None or self._genesis is None:
            return None
        return self._directory / f"{self._genesis[:32]}.sqlite"

    @property
    def is_open(self) -> bool:
        """Whether the index knows its log (its file may be let go until the next call)."""
        return self._genesis is not None

    @property
    def holds_file(self) -> bool:
        """Whether a connection to the index file is open (what :meth:`release` lets go)."""
        return self._db is not None and self.path is not None

    def open(self, genesis: str) -> None:
        """Open (or create) the index of the log whose first entry has hash ``genesis``."""
        if self._genesis is not None:
            if genesis != self._genesis:
                raise IndexUnusableError("the log's first entry changed under an open index")
            if self._db is None:
                self._reconnect(create=False)
            return
        self._genesis = genesis
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_other_incarnations(self.path)
        self._reconnect(create=True)

    def _reconnect(self, *, create: bool) -> None:
        """Connect to the file; only :meth:`open` may create it. A file gone since it was let go (removed by a
        rebuild in another process, a purge) is refused instead of being created again empty: the state this
        index described up to its flushed seq would then silently read as records that never existed."""
        path = self.path
        if path is None:
            self._db = self._connect("")  # SQLite's private temporary database, on disk, gone when closed
            return
        try:
            self._db = self._connect(str(path) if create else f"{path.absolute().as_uri()}?mode=rw")
        except sqlite3.DatabaseError as exc:
            self._db = None
            raise IndexUnusableError(f"{path.name}: {exc}") from exc

    def _connect(self, target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10.0,
                             uri=target.startswith("file:"))
        try:
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            if target:
                # WAL: readers in other processes never wait for a writer. NORMAL: a crash may lose the newest
                # flushes (rebuilt from the log), never leave the file inconsistent.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
            # The format is checked before the rest of the schema is applied: a file of an older format is
            # rebuilt, not given a new index over rows that are about to be dropped.
            db.execute(_META)
            found = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if found and (found.get("format") != FORMAT or found.get("genesis") != self._genesis):
                raise IndexUnusableError(f"index of format {found.get('format')!r} for another log")
            db.executescript(_SCHEMA)
            if not found:
                db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                               [("format", FORMAT), ("genesis", self._genesis or "")])
        except Exception:
            db.close()
            raise
        return db

    def _remove_other_incarnations(self, keep: Path) -> None:
        """Index files of earlier logs under this tenant id (purged since) are never read again."""
        for other in keep.parent.glob("*.sqlite*"):
            if not other.name.startswith(keep.name):
                with contextlib.suppress(OSError):
                    other.unlink()

    def reset(self) -> None:
        """Forget everything in the index (it disagrees with the log): the caller rebuilds it."""
        path = self.path
        self.close()
        if path is not None:
            for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                with contextlib.suppress(FileNotFoundError):
                    name.unlink()
            logger.warning("record index {} removed: it did not match the event log; rebuilding it", path)
        if self._genesis is not None:
            genesis, self._genesis = self._genesis, None
            self.open(genesis)

    def release(self) -> None:
        """Let the file go until the next call (a private temporary index would be lost: it is kept)."""
        if self.path is not None:
            self.close()

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # --- reading -------------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection | None:
        """The connection, opened again if it was let go; None before the log has a first entry."""
        if self._db is None and self._genesis is not None:
            self._reconnect(create=False)
        return self._db

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        db = self._conn()
        if db is None:
            return []
        try:
            return db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise IndexUnusableError(f"record index {self.path}: {exc}") from exc

    def states(self) -> list[StateRow]:
        """Every state row, newest first."""
        rows = self._query("SELECT seq, hash, body FROM states ORDER BY seq DESC", ())
        return [StateRow(seq, digest, body) for seq, digest, body in rows]

    def fetch(self, kind: str, record_id: str, at_seq: int) -> tuple[int, bytes] | None:
        """The newest version of a record at or before ``at_seq``: ``(ord, body)``, or None."""
        rows = self._query("SELECT ord, body FROM records WHERE kind = ? AND id = ? AND seq <= ? "
                           "ORDER BY seq DESC LIMIT 1", (kind, record_id, at_seq))
        return (rows[0][0], rows[0][1]) if rows else None

    def listing(self, kind: str, at_seq: int) -> Iterator[tuple[str, int, bytes]]:
        """Every record of ``kind`` as it was at ``at_seq``, in creation order: ``(id, ord, body)``."""
        return iter(self._query(_ROWS + _IN_ORDER, (kind, at_seq)))

    def listing_page(self, kind: str, at_seq: int, *, skip: int, count: int, leave_out: Collection[str],
                     where: tuple[str, str] | None = None) -> list[tuple[str, int, bytes]]:
        """:meth:`listing` without the records ``leave_out`` names, from its ``skip``-th row, at most ``count``
        rows: walks ``records_by_order`` up to the page instead of sorting every record of the kind. ``where``,
        ``(field, value)``, keeps the records whose field (a string) has that value."""
        if where is None:
            return self._query(_ROWS + _LEFT_OUT + _IN_ORDER + _PAGE_BOUNDS,
                               (kind, at_seq, _json_list(leave_out), count, skip))
        field, value = where
        return self._query(_ROWS + _LEFT_OUT + _WHERE + _IN_ORDER + _PAGE_BOUNDS,
                           (kind, at_seq, _json_list(leave_out), f"$.{field}", value, count, skip))

    def count_listed(self, kind: str, at_seq: int, *, leave_out: Collection[str], where: tuple[str, str]) -> int:
        """How many rows :meth:`listing_page` would give with no page limit (scanned in SQLite, none decoded)."""
        field, value = where
        rows = self._query(_COUNT, (kind, at_seq, _json_list(leave_out), f"$.{field}", value))
        return int(rows[0][0]) if rows else 0

    def history(self, owner: str, at_seq: int) -> list[bytes]:
        return [body for (body,) in self._query(
            "SELECT body FROM history WHERE owner = ? AND seq <= ? ORDER BY seq", (owner, at_seq))]

    # --- writing -------------------------------------------------------------------------------------------------

    def write(self, records: Iterable[RecordRow], history: Iterable[tuple[str, int, bytes]], state: StateRow) -> None:
        """Store one flush atomically: the changed records, new history rows and the state they belong to."""
        db = self._conn()
        if db is None:
            raise IndexUnusableError("the record index has no log to describe yet")
        db.execute("BEGIN IMMEDIATE")
        try:
            # OR REPLACE: a row another process wrote for the same version holds the same bytes.
            db.executemany("INSERT OR REPLACE INTO records (kind, id, seq, ord, body) VALUES (?, ?, ?, ?, ?)",
                           records)
            db.executemany("INSERT OR REPLACE INTO history (owner, seq, body) VALUES (?, ?, ?)", list(history))
            db.execute("INSERT OR REPLACE INTO states (seq, hash, body) VALUES (?, ?, ?)",
                       (state.seq, state.hash, state.body))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
