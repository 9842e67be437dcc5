"""Run every benchmark in sequence and print each one's table and ratios (`make bench`).

Benchmarks share the machine's two cores with their load generator; run them on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("Issue 11 table: ratios to bare aiohttp, scrape cost, decisions/s, memory", ["table_bench.py"]),
    ("Pipeline steps: in-process cost per request", ["hot_path_bench.py"]),
    ("Event loop: uvloop vs asyncio, ratios to bare aiohttp", ["event_loop_bench.py"]),
    ("HTTP: gateway vs bare aiohttp", ["http_bench.py", "--seconds", "5"]),
    ("HTTP: telemetry + rate limiting on vs off", ["telemetry_bench.py", "--rounds", "3"]),
    ("Event log: durable vs non-durable appends, verify vs raw", ["eventlog_bench.py"]),
    ("Core: durable decisions/s", ["core_bench.py"]),
    ("PostgreSQL event store", ["postgres_eventlog_bench.py"]),
    ("Workers, PostgreSQL vs embedded store, Redis vs embedded limiter", ["scale_bench.py"]),
    ("Embedded limiter: shared SQLite state vs a dict", ["ratelimit_shared_bench.py"]),
]


def main() -> int:
    failed = 0
    for title, argv in BENCHES:
        print(f"\n=== {title} ===", flush=True)
        result = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
