"""Loading another store's entries into PostgreSQL (the store's side of ``libervia restore`` and ``migrate``), and
setting the current content aside before a forced restore.

A tenant's entries go in one transaction that holds the tenant's head row locked (as appends do), so an
interrupted import leaves the log as it was; re-running it skips the entries the log already holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from libervia.eventlog.chain import canonical_json
from libervia.storage import Checkpoint, entries_past_head
from libervia_plugins.storage_postgres.database import Database, quote_ident
from libervia_plugins.storage_postgres.eventlog import _Sql as EventSql

_BATCH = 1000


async def import_log(db: Database, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                     checkpoints: Sequence[Checkpoint]) -> int:
    sql = EventSql(db.tables)
    added = 0
    with db.errors(f"import the event log of tenant {tenant_id}"):
        async with db.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.create_head, tenant_id)
            row = await conn.fetchrow(sql.lock_head, tenant_id)
            batch: list[dict[str, Any]] = []

            async def flush() -> None:
                if batch:
                    lines = [canonical_json(entry).decode() for entry in batch]
                    await conn.execute(sql.insert_lines, tenant_id, [entry["seq"] for entry in batch], lines)
                    last = batch[-1]
                    # Sizes counted as the file store counts them (a newline each), so quotas mean the same.
                    size = sum(len(line.encode()) + 1 for line in lines)
                    await conn.execute(sql.move_head, tenant_id, last["seq"], last["hash"], last["ts"], size)
                    batch.clear()

            async for entry in entries_past_head(tenant_id, entries, int(row["seq"]), row["hash"]):
                batch.append(entry)
                added += 1
                if len(batch) >= _BATCH:
                    await flush()
            await flush()
            held = {(r["seq"], r["hash"], r["ts"], r["signature"])
                    for r in await conn.fetch(sql.checkpoints, tenant_id)}
            for cp in checkpoints:
                if (cp.seq, cp.hash, cp.ts, cp.signature) not in held:
                    await conn.execute(sql.insert_checkpoint, tenant_id, cp.seq, cp.hash, cp.ts, cp.signature)
    return added


async def set_aside(db: Database) -> str:
    """Rename the schema out of the way (kept, never dropped) and create a fresh one."""
    t = db.tables
    aside = f"{t.schema_name}_pre_restore_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    with db.errors(f"set the PostgreSQL schema {t.schema_name!r} aside"):
        await db.pool.execute(f"ALTER SCHEMA {t.schema} RENAME TO {quote_ident(aside)}")
    await db.close()
    await db.connect()
    return f"PostgreSQL schema {aside}"
