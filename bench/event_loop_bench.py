"""uvloop against asyncio's own loop: the same gateway, once on each, on GET /health and a key-authenticated
GET /api/v1/eventlog/status, each ratio to a bare aiohttp app measured in the same round (issue 11.3).

    python bench/event_loop_bench.py [--seconds 3] [--rounds 3]

Server CPU per request is printed beside the ratios: other load on a shared machine moves it least.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import start_bare
from bench.loadgen import SERVER_CPU
from bench.table_bench import ratio_rounds
from tests.gateway_process import GatewayProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loops = {"uvloop": {}, "asyncio": {"LIBERVIA_EVENT_LOOP": "asyncio"}}
        gateways = {}
        for name, env in loops.items():
            base = Path(tmp) / name / "data"
            base.parent.mkdir()
            gateways[name] = GatewayProcess(base, {"LOG_LEVEL": "info", **env}, launcher=tuple(SERVER_CPU)).start()
        bare, bare_url = start_bare()
        try:
            keys = {}
            for name, gateway in gateways.items():
                asyncio.run(gateway.create_tenant("bench", quotas={"rateLimitRpm": 0}))
                keys[name] = asyncio.run(gateway.create_key("bench", "public"))
            for path in ("/health", "/api/v1/eventlog/status"):
                for name, gateway in gateways.items():
                    assert gateway.proc is not None
                    headers = {} if path == "/health" else {"Authorization": f"Bearer {keys[name]}"}
                    ratio, each, bare_us, gw_us = ratio_rounds(bare_url, bare.pid, gateway.url + path,
                                                               gateway.proc.pid, headers, args.rounds, args.seconds,
                                                               args.connections)
                    print(f"{path:<26} {name:<8} {ratio:5.2f}x bare  (rounds {', '.join(f'{r:.2f}' for r in each)};"
                          f" CPU/req bare {bare_us:.0f} us, gateway {gw_us:.0f} us)", flush=True)
        finally:
            bare.kill()
            for gateway in gateways.values():
                gateway.stop()


if __name__ == "__main__":
    main()
