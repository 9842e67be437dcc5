"""``storage_postgres``: tenants, keys, revocations and event logs in PostgreSQL, shared by every gateway process.

Select it with ``storage = "storage_postgres"`` and give ``[<env>.plugin.storage_postgres] dsn`` (better: the
environment variable ``LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN``, so the password stays out of files). Gateways on
several machines pointing at one database and schema then share everything: the registry is one versioned row that
each process polls, and each tenant's log is chained under a row lock, so it never forks.

``start()`` opens the pool and creates the schema and its tables if they are missing (see
:mod:`libervia_plugins.storage_postgres.database`); the signed checkpoints use the gateway's checkpoint key, which
never lives in the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from libervia import hookimpl
from libervia.errors import StartupError
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.gateway import Gateway
from libervia.schemas import load_schema
from libervia.storage import Checkpoint, CheckResult, StorageError
from libervia_plugins.storage_postgres import importing
from libervia_plugins.storage_postgres.database import Database
from libervia_plugins.storage_postgres.eventlog import PostgresEventStore, PostgresTenantEventLog
from libervia_plugins.storage_postgres.registry import PostgresRegistryStore

PLUGIN_NAME = "storage_postgres"

__all__ = ["PostgresEventStore", "PostgresRegistryStore", "PostgresStorage", "PostgresTenantEventLog"]


class PostgresStorage:
    name = PLUGIN_NAME

    def __init__(self, dsn: str, signer: CheckpointSigner, checkpoint_every: int, *, schema: str = "libervia",
                 pool_min_size: int = 1, pool_max_size: int = 10, command_timeout_s: float = 10.0,
                 connect_timeout_s: float = 5.0, ready_timeout_s: float = 1.0) -> None:
        self.db = Database(dsn, schema, pool_min_size=pool_min_size, pool_max_size=pool_max_size,
                           command_timeout_s=command_timeout_s, connect_timeout_s=connect_timeout_s)
        self.ready_timeout_s = ready_timeout_s
        self.registry = PostgresRegistryStore(self.db)
        self.events = PostgresEventStore(self.db, signer, checkpoint_every=checkpoint_every)

    def __repr__(self) -> str:
        return f"PostgresStorage(schema={self.db.tables.schema_name!r})"

    async def start(self) -> None:
        await self.db.connect()

    async def check_ready(self) -> dict[str, CheckResult]:
        schema = self.db.tables.schema_name
        try:
            await self.db.ping(self.ready_timeout_s)
        except StorageError as exc:
            return {"storage": CheckResult(False, str(exc), {"schema": schema})}
        return {"storage": CheckResult(True, f"PostgreSQL reachable (schema {schema})",
                                       {"schema": schema, "pool": self.db.pool_stats()})}

    async def import_log(self, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                         checkpoints: Sequence[Checkpoint]) -> int:
        """``libervia.storage.LogImporter``: restore and migration load entries through this."""
        return await importing.import_log(self.db, tenant_id, entries, checkpoints)

    async def set_aside(self) -> str:
        await self.events.close()
        return await importing.set_aside(self.db)

    async def close(self) -> None:
        try:
            await self.events.close()
        finally:
            await self.db.close()


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema("plugins/storage_postgres")


@hookimpl
def libervia_storage(gateway: Gateway) -> PostgresStorage:
    config = gateway.plugin_config(PLUGIN_NAME)
    if config["pool_min_size"] > config["pool_max_size"]:
        raise StartupError([f"plugin.{PLUGIN_NAME}.pool_min_size: {config['pool_min_size']} is larger than "
                            f"pool_max_size ({config['pool_max_size']})"])
    return PostgresStorage(
        config["dsn"], gateway.checkpoint_signer, int(gateway.settings.get("checkpoint_every")),
        schema=config["schema"], pool_min_size=config["pool_min_size"], pool_max_size=config["pool_max_size"],
        command_timeout_s=config["command_timeout_s"], connect_timeout_s=config["connect_timeout_s"],
        ready_timeout_s=config["ready_timeout_s"])
