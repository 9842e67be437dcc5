"""Cost per hit of the embedded limiter's shared state: GCRA on a dict (one process) vs the SQLite file every
worker shares, and the SQLite file with two processes hitting one key at once.

Prints microseconds per hit. Run: ``python bench/ratelimit_shared_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path

from libervia.ratelimit import Gcra
from libervia_plugins.ratelimit_memory import MemoryRateLimiter

LIMIT = 10_000_000  # never refuses: the cost measured is the decision and the write, not a rejection path


def dict_gcra(hits: int) -> float:
    state: dict[str, int] = {}
    gcra = Gcra.of(LIMIT)
    started = time.perf_counter()
    for _ in range(hits):
        now = time.time_ns()
        allowed, tat = gcra.admit(state.get("tenant:t"), now)
        if allowed:
            state["tenant:t"] = tat
        gcra.decision(allowed, tat, now)
    return (time.perf_counter() - started) / hits * 1e6


async def _sqlite(path: Path | None, hits: int) -> float:
    limiter = MemoryRateLimiter(path)
    started = time.perf_counter()
    for _ in range(hits):
        await limiter.hit("tenant:t", LIMIT)
    elapsed = time.perf_counter() - started
    await limiter.close()
    return elapsed / hits * 1e6


def sqlite_hits(path: str | None, hits: int) -> float:
    return asyncio.run(_sqlite(Path(path) if path else None, hits))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shared = str(Path(tmp) / "ratelimit.sqlite3")
        rows = [
            ("dict (one process, not shared)", dict_gcra(args.hits)),
            ("SQLite :memory: (one process)", sqlite_hits(None, args.hits)),
            ("SQLite WAL file, one process", sqlite_hits(shared, args.hits)),
        ]
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            both = pool.starmap(sqlite_hits, [(shared, args.hits), (shared, args.hits)])
        rows.append(("SQLite WAL file, two processes at once (mean)", sum(both) / 2))
    print(f"{'limiter state':48} {'us/hit':>8}")
    for name, cost in rows:
        print(f"{name:48} {cost:8.1f}")


if __name__ == "__main__":
    main()
