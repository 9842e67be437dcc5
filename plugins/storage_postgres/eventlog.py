"""Tenant event logs in PostgreSQL, shared by every gateway process that uses the same database and schema.

How an append stays atomic, durable and unforked:

* Appends queue up; one flush at a time per log takes every queued batch (group commit) into one transaction:
  lock the tenant's ``event_heads`` row (``SELECT ... FOR UPDATE``), chain the batches onto the head found there
  with :func:`libervia.eventlog.stores.chain_group`, insert every line with one statement, move the head, and
  commit. The commit is the durability point, so all batches in a group share one WAL flush.
* The row lock orders writers of every process, so the chain never forks; the primary key ``(tenant, seq)``
  would refuse a second entry at a seq even if it did not.
* A batch appended with ``expected_seq`` is checked against the locked head in group order, counting the batches
  of its group chained before it; one that finds the head elsewhere fails alone with
  :class:`AppendConflictError`, as does a batch whose payload is not JSON, before anything of its group is written.
  A failed transaction fails every batch of the group and writes nothing.
* A checkpoint crossing a multiple of ``checkpoint_every`` is inserted in the same transaction as the entries it
  signs, so a log and its checkpoints never disagree after a crash.

Each entry is stored as its canonical JSON line, the exact bytes that are hashed, so exports are byte-identical to
the file store's and any entry can be re-proven from the database alone. ``entries()`` reads pages of
:data:`PAGE_ROWS` by seq (keyset pagination) and holds no connection between pages, so a long export neither
loads the log into memory nor pins a pooled connection while the client reads slowly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import asyncpg
import orjson
from loguru import logger

from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.group_commit import Entries, PendingAppend
from libervia.eventlog.stores import OpenLogs, QueuedEventLog, chain_group
from libervia.storage import (
    Checkpoint,
    CorruptStoreError,
    LogHead,
    Snapshot,
    StorageError,
)
from libervia.tenants.ids import tenant_id_problem
from libervia_plugins.storage_postgres.database import Database, Tables

PAGE_ROWS = 1000


class _Sql:
    """The statements of the event store, built once per schema."""

    def __init__(self, t: Tables) -> None:
        # ruff's S608 sees string-built SQL; every value is a bind parameter, only quoted table names are formatted.
        self.create_head = f"INSERT INTO {t.heads} (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING"  # noqa: S608
        self.head = f"SELECT seq, hash, last_append_at FROM {t.heads} WHERE tenant = $1"  # noqa: S608
        self.lock_head = self.head + " FOR UPDATE"
        self.move_head = (f"UPDATE {t.heads} SET seq = $2, hash = $3, last_append_at = $4, "  # noqa: S608
                          "size_bytes = size_bytes + $5 WHERE tenant = $1")
        self.size = f"SELECT size_bytes FROM {t.heads} WHERE tenant = $1"  # noqa: S608
        self.tenants = f"SELECT tenant FROM {t.heads} ORDER BY tenant"  # noqa: S608
        self.insert_lines = (f"INSERT INTO {t.events} (tenant, seq, line) "  # noqa: S608
                             "SELECT $1, seq, line FROM unnest($2::bigint[], $3::text[]) AS batch(seq, line)")
        self.page = (f"SELECT seq, line FROM {t.events} "  # noqa: S608
                     "WHERE tenant = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4")
        self.line_at = f"SELECT line FROM {t.events} WHERE tenant = $1 AND seq = $2"  # noqa: S608
        # A slower process must not replace a newer snapshot with an older one.
        self.save_snapshot = (f"INSERT INTO {t.snapshots} AS s (tenant, seq, hash, state) "  # noqa: S608
                              "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant) DO UPDATE "
                              "SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, state = EXCLUDED.state, "
                              "saved_at = now() WHERE s.seq <= EXCLUDED.seq")
        self.load_snapshot = (f"SELECT s.seq, s.hash, s.state, e.line FROM {t.snapshots} s "  # noqa: S608
                              f"LEFT JOIN {t.events} e ON e.tenant = s.tenant AND e.seq = s.seq "
                              "WHERE s.tenant = $1")
        self.insert_checkpoint = (f"INSERT INTO {t.checkpoints} (tenant, seq, hash, ts, signature) "  # noqa: S608
                                  "VALUES ($1, $2, $3, $4, $5)")
        self.checkpoints = (f"SELECT tenant, seq, hash, ts, signature FROM {t.checkpoints} "  # noqa: S608
                            "WHERE tenant = $1 ORDER BY id")
        self.last_checkpoint_seq = f"SELECT max(seq) FROM {t.checkpoints} WHERE tenant = $1"  # noqa: S608


def _head_of(row: Any) -> LogHead:
    return LogHead(row["seq"], row["hash"], row["last_append_at"])


def _hash_in_line(line: str | None) -> str | None:
    try:
        entry = orjson.loads(line) if line is not None else None
    except orjson.JSONDecodeError:
        return None
    return entry.get("hash") if isinstance(entry, dict) else None


class PostgresTenantEventLog(QueuedEventLog):
    """One tenant's log. Get it from :meth:`PostgresEventStore.open_log`; it implements ``TenantEventLog``.

    Its status never counts quarantined tails: a transaction commits whole or not at all.
    """

    def __init__(self, tenant_id: str, db: Database, sql: _Sql, signer: CheckpointSigner, *, checkpoint_every: int,
                 on_close: Callable[[PostgresTenantEventLog], None]) -> None:
        super().__init__(tenant_id, on_close=on_close)
        self._db = db
        self._sql = sql
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._closed = False

    async def open(self) -> None:
        """Create the tenant's head row if it is new (which also lists the tenant) and read the head."""
        with self._errors("open"):
            async with self._db.pool.acquire() as conn:
                await conn.execute(self._sql.create_head, self.tenant_id)
                self._head = _head_of(await conn.fetchrow(self._sql.head, self.tenant_id))

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return self._db.errors(f"{doing} the event log of tenant {self.tenant_id}")

    def _ensure_open(self) -> None:
        if self._closed:
            raise StorageError(f"the event log of tenant {self.tenant_id} is closed")

    # -- appending --

    async def _write_group(self, batches: list[PendingAppend]) -> list[Entries | Exception]:
        sql, tenant = self._sql, self.tenant_id
        with self._errors("append to"):
            async with self._db.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(sql.lock_head, tenant)
                if row is None:
                    raise CorruptStoreError(f"the event log of tenant {tenant} has no head row in PostgreSQL")
                group = chain_group(tenant, _head_of(row), batches)
                head = group.head
                if not group.lines:
                    self._head = head  # every batch was refused, but the head read under the lock is news
                    return group.results
                seqs = [entry["seq"] for entries in group.accepted() for entry in entries]
                # Counted as the file store counts them (a newline each), so size quotas mean the same.
                added_bytes = sum(len(line) + 1 for line in group.lines)
                await conn.execute(sql.insert_lines, tenant, seqs, [line.decode() for line in group.lines])
                await conn.execute(sql.move_head, tenant, head.seq, head.hash, head.last_append_at, added_bytes)
                if group.crosses_checkpoint(self._checkpoint_every):
                    await self._insert_checkpoint(conn, head)
        self._head = head
        self._health.degraded = False
        return group.results

    async def _insert_checkpoint(self, conn: asyncpg.Connection, head: LogHead) -> None:
        assert head.hash is not None
        cp = self._signer.sign(self.tenant_id, head.seq, head.hash)
        await conn.execute(self._sql.insert_checkpoint, cp.tenant, cp.seq, cp.hash, cp.ts, cp.signature)

    # -- reading --

    async def head(self) -> LogHead:
        self._ensure_open()
        with self._errors("read the head of"):
            row = await self._db.pool.fetchrow(self._sql.head, self.tenant_id)
        if row is None:
            raise CorruptStoreError(f"the event log of tenant {self.tenant_id} has no head row in PostgreSQL")
        self._head = _head_of(row)
        return self._head

    async def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        # The head read first bounds the walk: it ends even while other processes keep appending, and returns
        # the log as it was when it started.
        last = (await self.head()).seq
        stop = last if to_seq is None else min(to_seq, last)
        seq = max(from_seq, 1)
        pool, loads = self._db.pool, orjson.loads
        while seq <= stop:
            with self._errors("read"):
                rows = await pool.fetch(self._sql.page, self.tenant_id, seq, stop, PAGE_ROWS)
            if not rows:
                return
            for row in rows:
                try:
                    entry = loads(row["line"])
                except orjson.JSONDecodeError:
                    entry = None
                if not isinstance(entry, dict):
                    raise CorruptStoreError(f"event log of tenant {self.tenant_id}: unparsable entry at seq "
                                            f"{row['seq']}")
                yield entry
            seq = rows[-1]["seq"] + 1

    async def size_bytes(self) -> int:
        with self._errors("measure"):
            size = await self._db.pool.fetchval(self._sql.size, self.tenant_id)
        return int(size or 0)

    # -- snapshots --

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._errors("save a snapshot of"):
            async with self._db.pool.acquire() as conn:
                line = await conn.fetchval(self._sql.line_at, self.tenant_id, snapshot.seq)
                if _hash_in_line(line) != snapshot.hash:
                    raise ValueError(f"snapshot at seq {snapshot.seq} does not match the log of tenant "
                                     f"{self.tenant_id}")
                await conn.execute(self._sql.save_snapshot, self.tenant_id, snapshot.seq, snapshot.hash,
                                   snapshot.state)

    async def load_snapshot(self) -> Snapshot | None:
        with self._errors("load the snapshot of"):
            row = await self._db.pool.fetchrow(self._sql.load_snapshot, self.tenant_id)
        if row is None:
            return None
        # The snapshot is only usable if the log still holds the very entry it was taken at.
        if _hash_in_line(row["line"]) != row["hash"]:
            logger.warning("snapshot of tenant {} (seq {}) does not match the log; ignoring it",
                           self.tenant_id, row["seq"])
            return None
        return Snapshot(seq=row["seq"], hash=row["hash"], state=bytes(row["state"]))

    # -- closing --

    async def _close_io(self) -> None:
        """Sign a checkpoint at the head unless one already pins it (not when discarding after a purge)."""
        try:
            if self.discarding:
                return
            with self._errors("checkpoint"):
                async with self._db.pool.acquire() as conn:
                    head = _head_of(await conn.fetchrow(self._sql.head, self.tenant_id))
                    pinned = await conn.fetchval(self._sql.last_checkpoint_seq, self.tenant_id) or 0
                    if head.hash is not None and head.seq > pinned:
                        await self._insert_checkpoint(conn, head)
        finally:
            self._closed = True


class PostgresEventStore:
    """The PostgreSQL ``EventStore``. ``checkpoint_every``: sign a checkpoint whenever an append crosses a multiple
    of it (and on close)."""

    def __init__(self, db: Database, signer: CheckpointSigner, checkpoint_every: int = 1000) -> None:
        self._db = db
        self._sql = _Sql(db.tables)
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self._logs: OpenLogs[PostgresTenantEventLog] = OpenLogs()

    async def open_log(self, tenant_id: str) -> PostgresTenantEventLog:
        problem = tenant_id_problem(tenant_id)
        if problem is not None:
            raise ValueError(f"invalid tenant id {tenant_id!r}: it {problem}")
        return await self._logs.open(tenant_id, lambda: self._open(tenant_id))

    async def _open(self, tenant_id: str) -> PostgresTenantEventLog:
        log = PostgresTenantEventLog(tenant_id, self._db, self._sql, self.signer,
                                     checkpoint_every=self.checkpoint_every, on_close=self._logs.forget)
        await log.open()
        return log

    async def tenant_ids(self) -> list[str]:
        with self._db.errors("list the tenants with an event log"):
            rows = await self._db.pool.fetch(self._sql.tenants)
        return [row["tenant"] for row in rows]

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._db.errors(f"save a checkpoint of tenant {checkpoint.tenant}"):
            await self._db.pool.execute(self._sql.insert_checkpoint, checkpoint.tenant, checkpoint.seq,
                                        checkpoint.hash, checkpoint.ts, checkpoint.signature)

    async def checkpoints(self, tenant_id: str) -> list[Checkpoint]:
        with self._db.errors(f"read the checkpoints of tenant {tenant_id}"):
            rows = await self._db.pool.fetch(self._sql.checkpoints, tenant_id)
        return [Checkpoint(tenant=row["tenant"], seq=row["seq"], hash=row["hash"], ts=row["ts"],
                           signature=row["signature"]) for row in rows]

    async def close(self) -> None:
        """Close every open log (each signs a final checkpoint)."""
        await self._logs.close_all()
