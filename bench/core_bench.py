"""Durable decisions per second through the gateway: 16 concurrent clients on one tenant, then spread over 16.

    python bench/core_bench.py [--seconds 5] [--clients 16]

Each decision is ``POST /api/v1/decisoes``: ten events appended atomically and fsynced before the 201. The
gateway runs as deployed (``python -m libervia serve``) on a throw-away BASE_DIR. One tenant serialises its
commands (one Core, one lock, one log), so the spread run shows what per-tenant parallelism buys; the in-process
row measures the Core and the file store alone, without HTTP, for the same 16 concurrent callers on one tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadResult
from libervia.core import TenantCore
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia_plugins.storage_files.eventlog import FileEventStore
from tests.core import bodies
from tests.core.conftest import default_policies
from tests.gateway_process import GatewayProcess

# As deployed, rate limiting is on: every benchmark tenant is charged on every request, with a limit (the
# highest a tenant may have) that no benchmark reaches, so that no request is refused. A limit of 0 would skip
# the limiter altogether and measure less than a deployment does.
RATE_LIMITED = {"quotas": {"rateLimitRpm": 10_000_000}}


async def _drive(url: str, tokens: list[str], seconds: float) -> LoadResult:
    """One keep-alive client per token, each posting decisions back to back until the deadline."""
    latencies: list[float] = []
    errors = 0
    body = bodies.decisao()
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, token: str) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {token}"}
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            async with session.post(f"{url}/api/v1/decisoes", json=body, headers=headers) as response:
                await response.read()
                if response.status != 201:
                    errors += 1
            latencies.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(tokens))) as session:
        await asyncio.gather(*(client(session, token) for token in tokens))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult("python", len(latencies), elapsed, quantiles[49], quantiles[98], errors)


async def _tokens(gateway: GatewayProcess, tenants: list[str], per_tenant: int) -> list[str]:
    tokens = []
    for tenant in tenants:
        await gateway.create_tenant(tenant, **RATE_LIMITED)
        token = await gateway.create_key(tenant, "public")
        tokens += [token] * per_tenant
    return tokens


async def _in_process(base: Path, clients: int, seconds: float) -> LoadResult:
    store = FileEventStore(base, CheckpointSigner(b"core-bench-checkpoint-key-000000"))
    core = TenantCore("bench", await store.open_log("bench"), default_policies())
    await core.start()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await core.decide(bodies.decisao(), actor="bench")
            latencies.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await core.close()
    await store.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return LoadResult("in-process", len(latencies), elapsed, quantiles[49], quantiles[98], 0)


def row(name: str, result: LoadResult) -> str:
    return (f"{name:<28} {result.rps:>8.0f} decisions/s ({result.rps * 10:>7.0f} events/s)   "
            f"p50 {result.p50_ms:>7.2f} ms   p99 {result.p99_ms:>7.2f} ms   errors {result.errors}")


async def run(seconds: float, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gateway = GatewayProcess(root / "data", {"LOG_LEVEL": "warning"}).start()
        try:
            one = await _tokens(gateway, ["bench-one"], clients)
            spread = await _tokens(gateway, [f"bench-{i:02d}" for i in range(clients)], 1)
            await _drive(gateway.url, one, 1.0)  # warm-up: start the Core, fill caches
            await _drive(gateway.url, spread, 1.0)
            one_result = await _drive(gateway.url, one, seconds)
            spread_result = await _drive(gateway.url, spread, seconds)
        finally:
            gateway.stop()
        local = await _in_process(root / "local", clients, seconds)
    print(f"POST /api/v1/decisoes, {clients} concurrent clients, {seconds:.0f} s each, durable (fsync) appends")
    print(row("one tenant", one_result))
    print(row(f"spread over {clients} tenants", spread_result))
    print(row("one tenant, in-process Core", local))
    print(f"ratio spread/one: {spread_result.rps / one_result.rps:.2f}   "
          f"ratio http/in-process (one tenant): {one_result.rps / local.rps:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.clients))


if __name__ == "__main__":
    main()
