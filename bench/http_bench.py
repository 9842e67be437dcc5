"""Gateway vs a bare aiohttp app on GET /health, same machine, same load, one run.

    python bench/http_bench.py [--seconds 5] [--connections 32]

Prints requests/s, p50 and p99 for each and the ratio gateway/bare. The gateway runs exactly as deployed
(``python -m libervia serve``: logging, middleware, telemetry, all plugins), on a throw-away BASE_DIR.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadResult, run_load
from tests.gateway_process import GatewayProcess, free_port


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_app.py")), str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bare app did not start")


def row(name: str, result: LoadResult) -> str:
    return (f"{name:<10} {result.rps:>10.0f} req/s   p50 {result.p50_ms:>7.2f} ms   p99 {result.p99_ms:>7.2f} ms"
            f"   errors {result.errors}  ({result.tool})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp) / "data", {"LOG_LEVEL": "info"}).start()
        bare, bare_url = start_bare()
        try:
            run_load(f"{bare_url}/health", seconds=1, connections=args.connections)  # warm-up
            run_load(f"{gateway.url}/health", seconds=1, connections=args.connections)
            bare_result = run_load(f"{bare_url}/health", seconds=args.seconds, connections=args.connections)
            gw_result = run_load(f"{gateway.url}/health", seconds=args.seconds, connections=args.connections)
        finally:
            bare.kill()
            gateway.stop()
    print(f"GET /health, {args.connections} connections, {args.seconds:.0f} s each")
    print(row("bare", bare_result))
    print(row("gateway", gw_result))
    print(f"ratio gateway/bare: {gw_result.rps / bare_result.rps:.2f}")


if __name__ == "__main__":
    main()
