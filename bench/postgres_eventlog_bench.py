"""PostgreSQL event store benchmark: durable appends/s with 1, 16 and 64 writers, two stores sharing one tenant,
and reading a log back.

    python bench/postgres_eventlog_bench.py [--dsn postgresql://postgres@127.0.0.1:5432/test] [--seconds 2]
                                            [--read-events 100000]

Every append is acknowledged only after its transaction committed (the server's ``synchronous_commit`` decides
what a commit waits for; the default waits for the WAL flush). Concurrent appends to one tenant in one process
share a transaction (group commit). "2 stores" runs two stores, each with its own pool as two gateway processes
would have, appending to the same tenant with half the writers each: their row lock serialises them.
Everything is written to a throw-away schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.eventlog_bench import SIGNER, append_rate, draft
from libervia.eventlog.verify import verify_full
from libervia_plugins.storage_postgres import PostgresStorage
from libervia_plugins.storage_postgres.database import quote_ident


async def open_storage(dsn: str, schema: str) -> PostgresStorage:
    storage = PostgresStorage(dsn, SIGNER, 0, schema=schema, pool_min_size=2, pool_max_size=4)
    await storage.start()
    return storage


async def bench_appends(dsn: str, schema: str, seconds: float) -> list[tuple[str, float]]:
    first, second = await open_storage(dsn, schema), await open_storage(dsn, schema)
    rows = []
    try:
        for writers in (1, 16, 64):
            log = await first.events.open_log(f"bench-{writers}")
            rows.append((f"{writers} writers, 1 store", await append_rate([log], writers, seconds)))
        shared = [await first.events.open_log("bench-shared"), await second.events.open_log("bench-shared")]
        rows.append(("64 writers, 2 stores", await append_rate(shared, 64, seconds)))
        result = await verify_full(shared[0], [], SIGNER)
        assert result["valid"], result
    finally:
        await first.close()
        await second.close()
    return rows


async def bench_read(dsn: str, schema: str, count: int) -> tuple[float, float]:
    """Entries/s written in batches of 1000, then entries/s streamed back through ``entries()``."""
    storage = await open_storage(dsn, schema)
    try:
        log = await storage.events.open_log("bench-read")
        started = time.perf_counter()
        for start in range(0, count, 1000):
            await log.append([draft(n) for n in range(start, min(count, start + 1000))])
        written = count / (time.perf_counter() - started)
        started = time.perf_counter()
        read = 0
        async for _ in log.entries():
            read += 1
        assert read == count
        return written, count / (time.perf_counter() - started)
    finally:
        await storage.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each append measurement")
    parser.add_argument("--read-events", type=int, default=100_000)
    args = parser.parse_args()
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        appends = await bench_appends(args.dsn, schema, args.seconds)
        written, read = await bench_read(args.dsn, schema, args.read_events)
    finally:
        conn = await asyncpg.connect(args.dsn)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.close()
    print("durable appends (one event each, acknowledged after commit):")
    for name, rate in appends:
        print(f"  {name:<22} {rate:>9.0f} appends/s")
    print(f"batches of 1000:         {written:>9.0f} events/s written")
    print(f"entries() read back:     {read:>9.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
