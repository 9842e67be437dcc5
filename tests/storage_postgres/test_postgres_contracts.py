"""The PostgreSQL stores against the registry and event store contracts, plus what only a database can do wrong:
start-up races and refusals, readiness, and tampering with stored rows.

Needs PostgreSQL at 127.0.0.1:5432 (the ``postgres_dsn`` fixture skips when it is unreachable, except under
CI=true). Every test works in a schema of its own, dropped afterwards; every "store" has its own pool, the way a
separate gateway process would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import orjson
import pytest

from libervia.eventlog.chain import canonical_json
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.verify import verify_full
from libervia.schemas import problems
from libervia.storage import EventStore, RegistryStore, Snapshot, StorageError
from libervia.testing.contracts.eventstore import SIGNER, EventStoreContract, MakeStore, all_entries, draft
from libervia.testing.contracts.registry import MakeRegistry, RegistryStoreContract, add_tenant
from libervia_plugins.storage_postgres import PostgresStorage
from libervia_plugins.storage_postgres.database import SCHEMA_VERSION, quote_ident

pytestmark = pytest.mark.postgres

OpenStorage = Callable[..., Awaitable[PostgresStorage]]


@pytest.fixture
async def open_storage(postgres_dsn: str, pg_schema: str) -> AsyncIterator[OpenStorage]:
    """Starts storages on the test's schema, each with its own small pool; all are closed after the test."""
    started: list[PostgresStorage] = []

    async def open_(signer: CheckpointSigner = SIGNER, checkpoint_every: int = 1000, *, dsn: str = postgres_dsn,
                    **options: object) -> PostgresStorage:
        storage = PostgresStorage(dsn, signer, checkpoint_every, schema=pg_schema, pool_min_size=1,
                                  pool_max_size=4, **options)
        await storage.start()
        started.append(storage)
        return storage

    yield open_
    for storage in reversed(started):
        await storage.close()


class TestPostgresRegistryContract(RegistryStoreContract):
    @pytest.fixture
    def make_registry(self, open_storage: OpenStorage) -> MakeRegistry:
        async def make() -> RegistryStore:
            return (await open_storage()).registry

        return make


class TestPostgresEventStoreContract(EventStoreContract):
    @pytest.fixture
    def make_store(self, open_storage: OpenStorage) -> MakeStore:
        async def make(signer: CheckpointSigner, checkpoint_every: int) -> EventStore:
            return (await open_storage(signer, checkpoint_every)).events

        return make


# --- start-up and readiness --------------------------------------------------------------------------------------

async def test_gateways_starting_together_on_a_new_schema_all_start(open_storage: OpenStorage) -> None:
    storages = await asyncio.gather(*(open_storage() for _ in range(4)))
    await storages[0].registry.update(add_tenant("acme"))
    for storage in storages:
        _, doc = await storage.registry.read()
        assert list(doc["tenants"]) == ["acme"]


async def test_a_schema_from_a_newer_gateway_is_refused(open_storage: OpenStorage, postgres_dsn: str,
                                                        pg_schema: str) -> None:
    await open_storage()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"UPDATE {quote_ident(pg_schema)}.meta SET value = $1 WHERE key = 'schema_version'",
                           str(SCHEMA_VERSION + 1))
    finally:
        await conn.close()
    with pytest.raises(StorageError, match="newer than this gateway"):
        await open_storage()


async def test_an_unreachable_server_refuses_start_without_showing_the_password(pg_schema: str) -> None:
    storage = PostgresStorage("postgresql://libervia:s3cret-pw@127.0.0.1:1/test", SIGNER, 1000, schema=pg_schema,
                              connect_timeout_s=2)
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as caught:
        await storage.start()
    assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in repr(storage)
    await storage.close()


async def test_readiness_reports_a_reachable_server_and_a_closed_pool(open_storage: OpenStorage) -> None:
    storage = await open_storage()
    ready = await storage.check_ready()
    assert ready["storage"].ok and ready["storage"].extra["pool"]["size"] >= 1
    await storage.close()
    ready = await storage.check_ready()
    assert not ready["storage"].ok and "not started" in ready["storage"].detail


def test_the_settings_schema_requires_a_dsn_and_fills_the_rest() -> None:
    missing = problems({}, "plugins/storage_postgres", fill_defaults=True)
    assert [p["message"] for p in missing] == ["'dsn' is a required property"]
    config = {"dsn": "postgresql://gw@db:5432/libervia"}
    assert problems(config, "plugins/storage_postgres", fill_defaults=True) == []
    assert config["schema"] == "libervia" and config["pool_max_size"] >= config["pool_min_size"]
    assert problems({"dsn": "mysql://x@y/z"}, "plugins/storage_postgres") != []
    assert problems({"dsn": "postgresql://x@y/z", "schema": 'x"; DROP'}, "plugins/storage_postgres") != []


# --- what is stored ----------------------------------------------------------------------------------------------

async def test_rows_hold_the_canonical_lines_and_an_edited_row_fails_verification(
        open_storage: OpenStorage, postgres_dsn: str, pg_schema: str) -> None:
    storage = await open_storage()
    log = await storage.events.open_log("acme")
    stored = await log.append([draft(n, text="hello") for n in range(1, 6)])
    table = f"{quote_ident(pg_schema)}.events"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        lines = await conn.fetch(f"SELECT line FROM {table} WHERE tenant = 'acme' ORDER BY seq")
        # What an export writes is what was hashed, byte for byte.
        assert [row["line"].encode() for row in lines] == [canonical_json(entry) for entry in stored]
        assert await log.size_bytes() == sum(len(row["line"].encode()) + 1 for row in lines)
        edited = orjson.loads(lines[2]["line"])
        edited["payload"]["text"] = "hellp"
        await conn.execute(f"UPDATE {table} SET line = $1 WHERE tenant = 'acme' AND seq = 3",
                           canonical_json(edited).decode())
    finally:
        await conn.close()
    result = await verify_full(log, await storage.events.checkpoints("acme"), SIGNER)
    assert not result["valid"] and result["firstInvalidIndex"] == 3 and "hash mismatch" in result["reason"]


async def test_deleted_tail_rows_are_caught_by_the_close_checkpoint(open_storage: OpenStorage, postgres_dsn: str,
                                                                    pg_schema: str) -> None:
    storage = await open_storage()
    log = await storage.events.open_log("acme")
    await log.append([draft(n) for n in range(1, 8)])
    await log.close()
    schema = quote_ident(pg_schema)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"DELETE FROM {schema}.events WHERE tenant = 'acme' AND seq > 5")
        await conn.execute(f"UPDATE {schema}.event_heads SET seq = 5 WHERE tenant = 'acme'")
    finally:
        await conn.close()
    log = await storage.events.open_log("acme")
    result = await verify_full(log, await storage.events.checkpoints("acme"), SIGNER)
    assert not result["valid"] and result["firstInvalidIndex"] == 6 and "truncated" in result["reason"]


async def test_entries_page_through_a_log_longer_than_one_page(open_storage: OpenStorage) -> None:
    storage = await open_storage()
    log = await storage.events.open_log("acme")
    await log.append([draft(n) for n in range(2500)])
    seqs = [entry["seq"] async for entry in log.entries(2)]
    assert seqs == list(range(2, 2501))
    assert [e["seq"] for e in await all_entries(log, 999, 1001)] == [999, 1000, 1001]


async def test_an_older_snapshot_never_replaces_a_newer_one(open_storage: OpenStorage) -> None:
    first, second = await open_storage(), await open_storage()
    log_a, log_b = await first.events.open_log("acme"), await second.events.open_log("acme")
    stored = await log_a.append([draft(n) for n in range(4)])
    await log_a.save_snapshot(Snapshot(4, stored[3]["hash"], b"new"))
    await log_b.save_snapshot(Snapshot(2, stored[1]["hash"], b"old"))
    assert await log_b.load_snapshot() == Snapshot(4, stored[3]["hash"], b"new")


async def test_appends_fail_with_a_storage_error_when_the_database_is_gone(open_storage: OpenStorage) -> None:
    storage = await open_storage()
    log = await storage.events.open_log("acme")
    await log.append([draft(1)])
    await storage.db.close()
    with pytest.raises(StorageError):
        await log.append([draft(2)])
    assert log.status()["degraded"] is True and log.status()["errorCount"] == 1


async def test_a_registry_change_is_pushed_to_other_processes_stores(open_storage: OpenStorage) -> None:
    """Two stores on one schema (two gateways): an update through one wakes a waiter on the other (LISTEN/NOTIFY)
    instead of leaving it to its poll."""
    writer, follower = (await open_storage()).registry, (await open_storage()).registry
    assert await follower.wait_for_change(0.2) is False  # listening now; nothing changed
    waiting = asyncio.ensure_future(follower.wait_for_change(30))
    await asyncio.sleep(0.1)
    await writer.update(lambda doc: doc["tenants"].setdefault("pushed", {"id": "pushed"}))
    assert await asyncio.wait_for(waiting, 10) is True
    _version, doc = await follower.read()
    assert "pushed" in doc["tenants"]
