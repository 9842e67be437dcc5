"""Scale figures for issue 12, one run on this machine (shared and noisy: compare ratios within a run).

    python bench/scale_bench.py [--seconds 4] [--connections 32]

1. ``GET /health`` and a key-authenticated read with ``--workers 1`` and ``--workers 2``, each against a bare
   aiohttp app in the same run, with the server's CPU time per request (master and workers summed): on a
   2-core machine the load generator takes a core, so requests/s alone understates what a second worker adds.
2. Decisions/s (``POST /api/v1/decisoes``, durable) on the embedded store against PostgreSQL.
3. Requests/s of a rate-limited read with the embedded (SQLite) limiter against the Redis one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import start_bare
from bench.loadgen import LoadResult, run_load
from tests.core import bodies
from tests.gateway_process import GatewayProcess


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that are alive (the arbiter and its workers)."""
    pids = [pid, *(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0.0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(url: str, pid: int, seconds: float, connections: int,
             headers: dict[str, str] | None = None) -> tuple[LoadResult, float]:
    before = tree_cpu_seconds(pid)
    result = run_load(url, seconds=seconds, connections=connections, headers=headers)
    return result, (tree_cpu_seconds(pid) - before) / max(1, result.requests) * 1e6


def line(name: str, result: LoadResult, cpu_us: float | None = None, bare: LoadResult | None = None) -> str:
    text = f"{name:<34} {result.rps:>8.0f} req/s  p99 {result.p99_ms:>7.2f} ms  errors {result.errors}"
    if cpu_us is not None:
        text += f"  CPU {cpu_us:>6.0f} us/req"
    if bare is not None:
        text += f"  ({result.rps / bare.rps:.2f} x bare)"
    return text


async def tenant(gateway: GatewayProcess, rpm: int = 0) -> str:
    name = f"bench-{secrets.token_hex(3)}"
    await gateway.create_tenant(name, quotas={"rateLimitRpm": rpm})
    token = await gateway.create_key(name)
    await asyncio.sleep(0.6)  # every worker follows the registry within registry_refresh_s
    return token


def workers_section(seconds: float, connections: int) -> None:
    print("\n--- workers: GET /health and GET /api/v1/eventlog/status (key-authenticated) ---")
    bare, bare_url = start_bare()
    try:
        run_load(f"{bare_url}/health", seconds=1, connections=connections)
        bare_result = run_load(f"{bare_url}/health", seconds=seconds, connections=connections)
        print(line("bare aiohttp /health", bare_result))
        for count in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                gateway = GatewayProcess(Path(tmp) / "data", serve_args=("--workers", str(count))).start()
                try:
                    token = asyncio.run(tenant(gateway))
                    run_load(f"{gateway.url}/health", seconds=1, connections=connections)
                    health = measured(f"{gateway.url}/health", gateway.proc.pid, seconds, connections)
                    read = measured(f"{gateway.url}/api/v1/eventlog/status", gateway.proc.pid, seconds,
                                    connections, {"Authorization": f"Bearer {token}"})
                finally:
                    gateway.stop()
            print(line(f"--workers {count} /health", health[0], health[1], bare_result))
            print(line(f"--workers {count} authenticated read", read[0], read[1], bare_result))
    finally:
        bare.kill()


async def decisions_per_second(gateway: GatewayProcess, seconds: float, clients: int) -> tuple[float, int]:
    token = await tenant(gateway)
    done = errors = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:
        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                async with session.post(gateway.url + "/api/v1/decisoes", json=bodies.decisao(),
                                        headers={"Authorization": f"Bearer {token}"}) as response:
                    await response.read()
                    if response.status == 201:
                        done += 1
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(clients)])
        return done / (time.perf_counter() - started), errors


def postgres_env(schema: str) -> dict[str, str]:
    return {"LIBERVIA_STORAGE": "storage_postgres",
            "LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN": os.environ.get(
                "LIBERVIA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
            "LIBERVIA_PLUGIN__STORAGE_POSTGRES__SCHEMA": schema}


async def drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(postgres_env(schema)["LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN"])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def decisions_section(seconds: float) -> None:
    print("\n--- decisions/s (POST /api/v1/decisoes, 16 clients, one tenant, durable) ---")
    schema = f"bench_{secrets.token_hex(4)}"
    for name, env in (("embedded (files)", {}), ("PostgreSQL", postgres_env(schema))):
        with tempfile.TemporaryDirectory() as tmp:
            gateway = GatewayProcess(Path(tmp) / "data", env).start()
            try:
                rate, errors = asyncio.run(decisions_per_second(gateway, seconds, 16))
            finally:
                gateway.stop()
        print(f"{name:<34} {rate:>8.0f} decisions/s  non-2xx {errors}")
    asyncio.run(drop(schema))


def limiter_section(seconds: float, connections: int) -> None:
    print("\n--- rate limiter: GET /api/v1/eventlog/status, tenant limited to 10^7/min ---")
    redis = {"LIBERVIA_RATE_LIMITER": "ratelimit_redis",
             "LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL": os.environ.get("LIBERVIA_TEST_REDIS_URL",
                                                                     "redis://127.0.0.1:6379/0"),
             "LIBERVIA_PLUGIN__RATELIMIT_REDIS__KEY_PREFIX": f"bench:{secrets.token_hex(4)}:"}
    for name, env in (("embedded limiter (SQLite)", {}), ("Redis limiter", redis)):
        with tempfile.TemporaryDirectory() as tmp:
            gateway = GatewayProcess(Path(tmp) / "data", env).start()
            try:
                token = asyncio.run(tenant(gateway, rpm=10_000_000))
                url = f"{gateway.url}/api/v1/eventlog/status"
                run_load(url, seconds=1, connections=connections, headers={"Authorization": f"Bearer {token}"})
                result, cpu = measured(url, gateway.proc.pid, seconds, connections,
                                       {"Authorization": f"Bearer {token}"})
            finally:
                gateway.stop()
        print(line(name, result, cpu))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print("one run on a shared 2-core machine: compare figures within this run only")
    workers_section(args.seconds, args.connections)
    decisions_section(args.seconds)
    limiter_section(args.seconds, args.connections)


if __name__ == "__main__":
    main()
