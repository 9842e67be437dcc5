"""The tenant registry in PostgreSQL: one JSONB document in one row, versioned by a counter.

``update`` locks the row (``SELECT ... FOR UPDATE``), runs the mutation on the document it read, writes it back
and bumps the version, all in one transaction: two gateway processes updating at once are serialised by the row
lock and never lose each other's changes, and a mutation that raises rolls everything back. The version is the
counter, so another process notices any change with one cheap ``SELECT``. Key usage lives in its own table and
never touches the registry row, so recording it never makes every process reload the registry.

Changes are also pushed: ``update`` sends a ``NOTIFY`` in its transaction (delivered when it commits), and
:meth:`PostgresRegistryStore.wait_for_change` returns as soon as one arrives on a connection of its own that
``LISTEN``s, so a key revoked through one gateway is refused by the others within milliseconds. If that connection
is lost, waiting falls back to the caller's timeout (a slow poll) and reconnects on the next wait.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import asyncpg
import orjson

from libervia.storage import CorruptStoreError, StorageError
from libervia_plugins.storage_postgres.database import Database

T = TypeVar("T")


class PostgresRegistryStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        t = db.tables
        self._sql_read = f"SELECT version, document::text AS document FROM {t.registry} WHERE id = 1"  # noqa: S608
        self._sql_version = f"SELECT version FROM {t.registry} WHERE id = 1"  # noqa: S608
        self._sql_lock = self._sql_read + " FOR UPDATE"
        self._sql_write = f"UPDATE {t.registry} SET version = $1, document = $2::jsonb WHERE id = 1"  # noqa: S608
        # GREATEST keeps the newest time when two processes report the same key (their batches may cross).
        self._sql_usage_upsert = (
            f"INSERT INTO {t.key_usage} AS u (key_id, last_used_at) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::text[]) "
            "ON CONFLICT (key_id) DO UPDATE SET last_used_at = GREATEST(u.last_used_at, EXCLUDED.last_used_at)")
        self._sql_usage = f"SELECT key_id, last_used_at FROM {t.key_usage}"  # noqa: S608
        # One channel per schema (channel names are identifiers: at most 63 bytes, hence the digest).
        self.channel = "libervia_registry_" + hashlib.sha256(t.schema_name.encode()).hexdigest()[:24]
        self._changed = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    def _document(self, row: Any) -> tuple[str, dict[str, Any]]:
        where = f"the tenant registry in PostgreSQL schema {self._db.tables.schema_name!r}"
        if row is None:
            raise CorruptStoreError(f"{where} has no registry row; restore it from a backup")
        try:
            doc = orjson.loads(row["document"])
            if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), dict):
                raise ValueError("expected an object with a 'tenants' object")
        except ValueError as exc:
            raise CorruptStoreError(f"{where} is corrupt ({exc}); it was left untouched - restore it from a "
                                    "backup or repair it by hand") from exc
        return str(row["version"]), doc

    async def read(self) -> tuple[str, dict[str, Any]]:
        with self._db.errors("read the tenant registry"):
            row = await self._db.pool.fetchrow(self._sql_read)
        return self._document(row)

    async def version(self) -> str:
        with self._db.errors("read the tenant registry version"):
            version = await self._db.pool.fetchval(self._sql_version)
        if version is None:
            self._document(None)
        return str(version)

    async def update(self, mutate: Callable[[dict[str, Any]], T]) -> tuple[T, str, dict[str, Any]]:
        with self._db.errors("update the tenant registry"):
            async with self._db.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(self._sql_lock)
                _, doc = self._document(row)
                # An exception from mutate leaves the transaction block, which rolls back: nothing is written.
                value = mutate(doc)
                new_version = row["version"] + 1
                await conn.execute(self._sql_write, new_version, orjson.dumps(doc).decode())
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(new_version))
        return value, str(new_version), doc

    async def purge_tenant_data(self, tenant_id: str, stamp: str) -> str | None:
        """Delete the tenant's events, head, snapshot and checkpoints in one transaction."""
        t = self._db.tables
        removed = 0
        with self._db.errors(f"purge the data of tenant {tenant_id}"):
            async with self._db.pool.acquire() as conn, conn.transaction():
                for table in (t.events, t.heads, t.snapshots, t.checkpoints):
                    status = await conn.execute(f"DELETE FROM {table} WHERE tenant = $1", tenant_id)  # noqa: S608
                    removed += int(status.split()[-1])
        return f"{removed} rows deleted from schema {t.schema_name!r}" if removed else None

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Return True as soon as any process changed the registry (a NOTIFY), False after ``timeout_s``.

        Never raises: with PostgreSQL unreachable it just waits, and the caller's poll notices the rest.
        """
        if self._listener is None or self._listener.is_closed():
            try:
                self._listener = await self._db.listen(self.channel, self._changed.set, self._lost)
            except StorageError:
                self._listener = None
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    def _lost(self) -> None:
        self._listener = None
        # Changes made while nobody listened went unannounced: have the caller look now.
        self._changed.set()

    async def record_key_usage(self, usage: Mapping[str, str]) -> None:
        if not usage:
            return
        keys = list(usage)
        with self._db.errors("record key usage"):
            await self._db.pool.execute(self._sql_usage_upsert, keys, [usage[key] for key in keys])

    async def key_usage(self) -> dict[str, str]:
        with self._db.errors("read key usage"):
            rows = await self._db.pool.fetch(self._sql_usage)
        return {row["key_id"]: row["last_used_at"] for row in rows}
