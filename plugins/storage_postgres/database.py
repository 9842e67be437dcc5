"""The PostgreSQL side of ``storage_postgres``: the connection pool, the tables in one schema, and DB failures.

Every table lives in one PostgreSQL schema (setting ``schema``, ``libervia`` by default), so one database can hold
several independent deployments and a test can drop everything it made with ``DROP SCHEMA ... CASCADE``.

Tables (``SCHEMA_VERSION`` 1):

* ``meta``          ``schema_version`` and future bookkeeping;
* ``registry``      one row: the tenant registry document (JSONB) and its version, bumped by every update;
* ``key_usage``     ``keyId -> lastUsedAt``, apart from the registry so usage never changes its version;
* ``event_heads``   one row per tenant log: head seq, hash, last append time, total line bytes. Appends lock this
                    row (``SELECT ... FOR UPDATE``), which orders writers of every gateway process;
* ``events``        ``(tenant, seq) -> line``: the entry's canonical JSON exactly as hashed, so an export is
                    byte-identical to the file store's and every entry can be re-proven from what is stored;
* ``snapshots``     the newest Core snapshot per tenant;
* ``checkpoints``   signed checkpoints, in insertion order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import orjson

from libervia.storage import StorageError
from libervia.tenants.registry import empty_document

SCHEMA_VERSION = 1

# What asyncpg raises when the server is unreachable, the connection drops, a statement fails or times out.
DB_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Tables:
    """Schema-qualified, quoted names of the tables, ready to be put into SQL text."""

    def __init__(self, schema: str) -> None:
        self.schema_name = schema
        self.schema = quote_ident(schema)
        self.meta = f"{self.schema}.meta"
        self.registry = f"{self.schema}.registry"
        self.key_usage = f"{self.schema}.key_usage"
        self.heads = f"{self.schema}.event_heads"
        self.events = f"{self.schema}.events"
        self.snapshots = f"{self.schema}.snapshots"
        self.checkpoints = f"{self.schema}.checkpoints"


def _ddl(t: Tables) -> str:
    return f"""
        CREATE TABLE IF NOT EXISTS {t.registry} (
            id smallint PRIMARY KEY CHECK (id = 1),
            version bigint NOT NULL,
            document jsonb NOT NULL
        );
        -- "C" collation: the timestamps all have one RFC 3339 shape, so byte order is time order.
        CREATE TABLE IF NOT EXISTS {t.key_usage} (
            key_id text PRIMARY KEY,
            last_used_at text COLLATE "C" NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {t.heads} (
            tenant text PRIMARY KEY,
            seq bigint NOT NULL DEFAULT 0,
            hash text,
            last_append_at text,
            size_bytes bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS {t.events} (
            tenant text NOT NULL,
            seq bigint NOT NULL,
            line text NOT NULL,
            PRIMARY KEY (tenant, seq)
        );
        CREATE TABLE IF NOT EXISTS {t.snapshots} (
            tenant text PRIMARY KEY,
            seq bigint NOT NULL,
            hash text NOT NULL,
            state bytea NOT NULL,
            saved_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS {t.checkpoints} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant text NOT NULL,
            seq bigint NOT NULL,
            hash text NOT NULL,
            ts text NOT NULL,
            signature text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS checkpoints_by_tenant ON {t.checkpoints} (tenant, seq);
    """


def _ddl_lock_key(schema: str) -> int:
    """The advisory lock taken while creating ``schema``: the same 64-bit number in every process."""
    digest = hashlib.sha256(b"libervia/storage_postgres/ddl\0" + schema.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _schema_version(conn: asyncpg.Connection, t: Tables) -> int | None:
    if await conn.fetchval("SELECT to_regclass($1)", f"{t.schema}.meta") is None:
        return None
    value = await conn.fetchval(f"SELECT value FROM {t.meta} WHERE key = 'schema_version'")  # noqa: S608
    return int(value) if value is not None else None


async def prepare_schema(conn: asyncpg.Connection, t: Tables) -> None:
    """Create the schema, its tables and the empty registry unless they exist; refuse a newer schema.

    Runs in one transaction under an advisory lock, so gateways starting together neither race on ``CREATE``
    (``IF NOT EXISTS`` alone is not safe against a concurrent creator) nor see half a schema. When the schema is
    already current nothing is created, so a role without ``CREATE`` privilege can run a prepared database.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ddl_lock_key(t.schema_name))
        found = await _schema_version(conn, t)
        if found == SCHEMA_VERSION:
            return
        if found is not None and found > SCHEMA_VERSION:
            raise StorageError(f"PostgreSQL schema {t.schema_name!r} has layout version {found}, newer than this "
                               f"gateway's {SCHEMA_VERSION}; upgrade the gateway")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {t.schema}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {t.meta} (key text PRIMARY KEY, value text NOT NULL)")
        await conn.execute(_ddl(t))
        await conn.execute(f"INSERT INTO {t.registry} (id, version, document) VALUES (1, 1, $1::jsonb) "  # noqa: S608
                           "ON CONFLICT (id) DO NOTHING", orjson.dumps(empty_document()).decode())
        await conn.execute(f"INSERT INTO {t.meta} (key, value) VALUES ('schema_version', $1) "  # noqa: S608
                           "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", str(SCHEMA_VERSION))


class Database:
    """One asyncpg pool on one schema, shared by the registry store and the event store of a process."""

    def __init__(self, dsn: str, schema: str, *, pool_min_size: int = 1, pool_max_size: int = 10,
                 command_timeout_s: float = 10.0, connect_timeout_s: float = 5.0) -> None:
        self.tables = Tables(schema)
        self._dsn = dsn
        self._password = urlsplit(dsn).password or ""
        self._pool_min_size = pool_min_size
        self._pool_max_size = pool_max_size
        self._command_timeout_s = command_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._listeners: list[asyncpg.Connection] = []

    def __repr__(self) -> str:  # never show the DSN: it may carry a password
        return f"Database(schema={self.tables.schema_name!r})"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("PostgreSQL storage is not started (or already closed)")
        return self._pool

    def pool_stats(self) -> dict[str, int]:
        pool = self._pool
        return {"size": pool.get_size(), "idle": pool.get_idle_size()} if pool is not None else {}

    async def connect(self) -> None:
        """Open the pool and prepare the schema; ``StorageError`` when PostgreSQL cannot be used."""
        if self._pool is not None:
            return
        with self.errors("connect to PostgreSQL"):
            pool = await asyncpg.create_pool(
                self._dsn, min_size=self._pool_min_size, max_size=self._pool_max_size,
                command_timeout=self._command_timeout_s, timeout=self._connect_timeout_s,
                server_settings={"application_name": "libervia-gateway"})
        try:
            with self.errors(f"prepare the PostgreSQL schema {self.tables.schema_name!r}"):
                async with pool.acquire() as conn:
                    await prepare_schema(conn, self.tables)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def ping(self, timeout_s: float) -> None:
        """One ``SELECT 1`` through the pool within ``timeout_s``; ``StorageError`` otherwise."""
        with self.errors("reach PostgreSQL"):
            async with asyncio.timeout(timeout_s), self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

    async def listen(self, channel: str, on_notify: Callable[[], None],
                     on_lost: Callable[[], None]) -> asyncpg.Connection:
        """A connection of its own (outside the pool: it stays LISTENing) that calls ``on_notify`` for each
        NOTIFY on ``channel`` and ``on_lost`` if the connection ends. ``StorageError`` if PostgreSQL is down."""
        with self.errors(f"listen on {channel}"):
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout_s,
                                         server_settings={"application_name": "libervia-gateway-listen"})
        try:
            with self.errors(f"listen on {channel}"):
                await conn.add_listener(channel, lambda *_: on_notify())
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(lambda *_: on_lost())
        self._listeners.append(conn)
        return conn

    async def close(self) -> None:
        listeners, self._listeners = self._listeners, []
        for conn in listeners:
            with contextlib.suppress(*DB_ERRORS):
                await asyncio.wait_for(conn.close(), self._command_timeout_s)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout_s)
            except TimeoutError:
                pool.terminate()

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn what asyncpg raises into ``StorageError`` (a 503 for clients), without leaking the password."""
        try:
            yield
        except DB_ERRORS as exc:
            detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "no detail")
            if self._password:
                detail = detail.replace(self._password, "***")
            raise StorageError(f"cannot {doing}: {type(exc).__name__}: {detail}") from exc
