"""Gateway vs a bare aiohttp app on GET /health, same machine, same load, one run.

    python bench/http_bench.py [--seconds 5] [--connections 32]

Prints requests/s, p50 and p99 for each and the ratio gateway/bare. The gateway runs exactly as deployed
(``python -m libervia serve``: logging, middleware, telemetry, all plugins), on a throw-away BASE_DIR.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import SERVER_CPU, LoadResult, run_load, run_load_with_cpu
from tests.gateway_process import GatewayProcess, free_port


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([*SERVER_CPU, sys.executable, str(Path(__file__).with_name("bare_app.py")), str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bare app did not start")


def median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def row(name: str, result: LoadResult) -> str:
    return (f"{name:<10} {result.rps:>10.0f} req/s   p50 {result.p50_ms:>7.2f} ms   p99 {result.p99_ms:>7.2f} ms"
            f"   errors {result.errors}  ({result.tool})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp) / "data", {"LOG_LEVEL": "info"}, launcher=tuple(SERVER_CPU)).start()
        bare, bare_url = start_bare()
        try:
            run_load(f"{bare_url}/health", seconds=1, connections=args.connections)  # warm-up
            run_load(f"{gateway.url}/health", seconds=1, connections=args.connections)
            bare_runs, gw_runs, bare_cpu, gw_cpu = [], [], [], []
            targets = {"bare": (f"{bare_url}/health", bare.pid, bare_runs, bare_cpu),
                       "gateway": (f"{gateway.url}/health", gateway.proc.pid, gw_runs, gw_cpu)}
            for round_no in range(args.rounds):
                # Both sides run in every round, so that a noisy moment hurts both alike, and the side that goes
                # first alternates: the first run of a pair is measurably slower on this kind of machine.
                order = ("bare", "gateway") if round_no % 2 == 0 else ("gateway", "bare")
                for side in order:
                    url, pid, runs, cpus = targets[side]
                    result, cpu = run_load_with_cpu(url, pid, seconds=args.seconds, connections=args.connections)
                    runs.append(result)
                    cpus.append(cpu)
            bare_result, gw_result = median_run(bare_runs), median_run(gw_runs)
        finally:
            bare.kill()
            gateway.stop()
    print(f"GET /health, {args.connections} connections, {args.rounds} rounds of {args.seconds:.0f} s, medians")
    print("ratios per round:", ", ".join(f"{g.rps / b.rps:.2f}" for b, g in zip(bare_runs, gw_runs, strict=True)))
    print(row("bare", bare_result))
    print(row("gateway", gw_result))
    paired = statistics.median(g.rps / b.rps for b, g in zip(bare_runs, gw_runs, strict=True))
    print(f"ratio gateway/bare: {paired:.2f} (median of the per-round ratios; each round runs both back to back)")
    bare_us, gw_us = statistics.median(bare_cpu), statistics.median(gw_cpu)
    print(f"server CPU per request: bare {bare_us:.0f} us, gateway {gw_us:.0f} us; ratio bare/gateway "
          f"{bare_us / gw_us:.2f} (the throughput ratio a CPU-bound server would reach on an idle machine)")


if __name__ == "__main__":
    main()
