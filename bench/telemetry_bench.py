"""What telemetry and rate limiting cost: gateway requests/s on an authenticated read route with the
Prometheus telemetry and the in-memory rate limiter enabled, against both disabled, in one run.

    python bench/telemetry_bench.py [--seconds 5] [--rounds 3] [--connections 32] [--path /admin/tenants/{id}]

Two gateways run side by side, identical but for the settings ``telemetry`` and ``rate_limiter``; they are
loaded in turn (A, B, A, B, ...) so that machine noise hits both, and the median of the rounds is compared. The
tenant's limit is far above the load, so every request goes through the limiter and none is refused.

Requests/s swing with whatever else the machine runs, so the bench also reports the gateway process's own CPU
time per request (user + system, from /proc), which other load barely moves, and the in-process cost of one
observed request and one limiter ``hit``, the two calls the features add to the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import SERVER_CPU, LoadResult, run_load_with_cpu
from libervia.gateway import Gateway
from libervia.plugin_manager import new_plugin_manager
from libervia.schemas import problems
from libervia.telemetry import RequestObservation
from libervia_plugins import telemetry_prometheus
from libervia_plugins.ratelimit_memory import MemoryRateLimiter
from tests.gateway_process import GatewayProcess

TENANT = "bench"
DISABLED = {"LIBERVIA_TELEMETRY": '""', "LIBERVIA_RATE_LIMITER": '""'}


async def prepare(gateway: GatewayProcess) -> str:
    await gateway.create_tenant(TENANT, quotas={"rateLimitRpm": 10_000_000})
    return await gateway.create_key(TENANT, "tenant_admin")


def telemetry_gateway() -> tuple[Any, Gateway]:
    """A plugin manager carrying only the telemetry plugin, and a gateway without settings for its hooks."""
    pm = new_plugin_manager()
    pm.register(telemetry_prometheus, name=telemetry_prometheus.PLUGIN_NAME)
    config: dict[str, object] = {}
    problems(config, "plugins/telemetry_prometheus", fill_defaults=True)
    return pm, Gateway(None, pm, {telemetry_prometheus.PLUGIN_NAME: config})  # type: ignore[arg-type]


def hot_path_costs(samples: int = 200_000) -> tuple[float, float]:
    """Microseconds per observed request (through pluggy, in batches of 32 as under load) and per limiter ``hit``."""
    pm, gateway = telemetry_gateway()
    batch = [RequestObservation("GET", "/admin/tenants/{id}", 200, 1.7, None)] * 32
    began = time.perf_counter()
    for _ in range(samples // len(batch)):
        pm.hook.libervia_observe_requests(gateway=gateway, observations=batch)
    observe_us = (time.perf_counter() - began) / samples * 1e6

    async def hits() -> float:
        limiter = MemoryRateLimiter()
        began = time.perf_counter()
        for _ in range(samples):
            await limiter.hit("tenant:bench", 10_000_000)
        return (time.perf_counter() - began) / samples * 1e6

    return observe_us, asyncio.run(hits())


def measure(gateway: GatewayProcess, url: str, token: str, seconds: int, connections: int) -> tuple[LoadResult, float]:
    """One load run; returns its result and the gateway's CPU microseconds per request during it."""
    assert gateway.proc is not None
    return run_load_with_cpu(url, gateway.proc.pid, seconds=seconds, connections=connections,
                             headers={"Authorization": f"Bearer {token}"})


def row(name: str, runs: list[tuple[LoadResult, float]]) -> str:
    rps = statistics.median(r.rps for r, _ in runs)
    p50 = statistics.median(r.p50_ms for r, _ in runs)
    p99 = statistics.median(r.p99_ms for r, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    errors = sum(r.errors for r, _ in runs)
    each = ", ".join(f"{r.rps:.0f}" for r, _ in runs)
    return (f"{name:<26} {rps:>7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  CPU {cpu:6.0f} us/req  "
            f"errors {errors}  [{each}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="whole seconds (wrk takes no fractions)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/admin/tenants/{id}", help="authenticated read route; {id} = tenant")
    args = parser.parse_args()
    path = args.path.replace("{id}", TENANT)
    with tempfile.TemporaryDirectory() as tmp:
        enabled = GatewayProcess(Path(tmp) / "enabled" / "data", launcher=tuple(SERVER_CPU))
        disabled = GatewayProcess(Path(tmp) / "disabled" / "data", DISABLED, launcher=tuple(SERVER_CPU))
        for gateway in (enabled, disabled):
            gateway.base_dir.parent.mkdir(parents=True)
            gateway.start()
        try:
            tokens = {id(gw): asyncio.run(prepare(gw)) for gw in (enabled, disabled)}
            results: dict[int, list[tuple[LoadResult, float]]] = {id(enabled): [], id(disabled): []}
            for gateway in (enabled, disabled):  # warm-up
                measure(gateway, gateway.url + path, tokens[id(gateway)], 1, args.connections)
            for round_no in range(args.rounds):
                # Alternate which side goes first, so that neither always runs on a machine the other warmed.
                order = (enabled, disabled) if round_no % 2 == 0 else (disabled, enabled)
                for gateway in order:
                    results[id(gateway)].append(
                        measure(gateway, gateway.url + path, tokens[id(gateway)], args.seconds, args.connections))
        finally:
            enabled.stop()
            disabled.stop()
    on = statistics.median(r.rps for r, _ in results[id(enabled)])
    off = statistics.median(r.rps for r, _ in results[id(disabled)])
    cpu_on = statistics.median(c for _, c in results[id(enabled)])
    cpu_off = statistics.median(c for _, c in results[id(disabled)])
    print(f"GET {args.path}, tenant_admin key, {args.connections} connections, "
          f"{args.rounds} x {args.seconds} s each")
    print(row("telemetry + rate limiting", results[id(enabled)]))
    print(row("both disabled", results[id(disabled)]))
    print(f"cost in requests/s: {100 * (1 - on / off):.1f} %   "
          f"cost in gateway CPU per request: {100 * (cpu_on / cpu_off - 1):.1f} %   (target: at most 15 %)")
    observe_us, hit_us = hot_path_costs()
    print(f"hot path in-process: observing a request {observe_us:.2f} us, limiter hit {hit_us:.2f} us")


if __name__ == "__main__":
    main()
