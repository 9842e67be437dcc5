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
from libervia.storage import Checkpoint, CorruptStoreError
from libervia_plugins.storage_postgres.database import Database, Tables, quote_ident

_BATCH = 1000


class _Sql:
    def __init__(self, t: Tables) -> None:
        # Only quoted table names are formatted; every value is a bind parameter.
        self.create_head = f"INSERT INTO {t.heads} (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING"  # noqa: S608
        self.lock_head = f"SELECT seq, hash FROM {t.heads} WHERE tenant = $1 FOR UPDATE"  # noqa: S608
        self.insert_lines = (f"INSERT INTO {t.events} (tenant, seq, line) "  # noqa: S608
                             "SELECT $1, seq, line FROM unnest($2::bigint[], $3::text[]) AS batch(seq, line)")
        self.move_head = (f"UPDATE {t.heads} SET seq = $2, hash = $3, last_append_at = $4, "  # noqa: S608
                          "size_bytes = size_bytes + $5 WHERE tenant = $1")
        self.checkpoints = f"SELECT seq, hash, ts, signature FROM {t.checkpoints} WHERE tenant = $1"  # noqa: S608
        self.insert_checkpoint = (f"INSERT INTO {t.checkpoints} (tenant, seq, hash, ts, signature) "  # noqa: S608
                                  "VALUES ($1, $2, $3, $4, $5)")


async def import_log(db: Database, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                     checkpoints: Sequence[Checkpoint]) -> int:
    sql = _Sql(db.tables)
    added = 0
    with db.errors(f"import the event log of tenant {tenant_id}"):
        async with db.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.create_head, tenant_id)
            row = await conn.fetchrow(sql.lock_head, tenant_id)
            head_seq, head_hash = int(row["seq"]), row["hash"]
            matched = head_seq == 0
            seqs: list[int] = []
            lines: list[str] = []
            size = 0
            last: dict[str, Any] | None = None

            async def flush() -> None:
                nonlocal size
                if seqs:
                    await conn.execute(sql.insert_lines, tenant_id, seqs, lines)
                    assert last is not None
                    await conn.execute(sql.move_head, tenant_id, last["seq"], last["hash"], last["ts"], size)
                    seqs.clear()
                    lines.clear()
                    size = 0

            async for entry in entries:
                seq = entry.get("seq")
                if isinstance(seq, int) and seq <= head_seq:
                    if seq == head_seq:
                        matched = entry.get("hash") == head_hash
                    continue
                if not matched:
                    break
                line = canonical_json(entry).decode()
                seqs.append(entry["seq"])
                lines.append(line)
                size += len(line.encode()) + 1  # counted as the file store counts them (a newline each)
                last = entry
                added += 1
                if len(seqs) >= _BATCH:
                    await flush()
            if not matched:
                raise CorruptStoreError(f"tenant {tenant_id}: the target already holds a different log (its head "
                                        f"is seq {head_seq}); nothing was imported")
            await flush()
            held = {(r["seq"], r["hash"], r["ts"], r["signature"]) for r in await conn.fetch(sql.checkpoints,
                                                                                            tenant_id)}
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
