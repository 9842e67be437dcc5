"""Every figure of issue 11's table in one run: gateway ratios to a bare aiohttp app, scrape cost at 1,000
tenants, durable decisions/s, memory after 10,000 decisions, reads of old episodes (from the record index), and
memory with 1,000 tenants plus 100,000 decisions on one (``--scale-decisions 0`` skips that one).

    python bench/table_bench.py [--seconds 3] [--rounds 3] [--connections 50] [--decisions 10000]

Each HTTP ratio is the median of ``--rounds`` rounds. In every round the bare app's ``GET /health`` and the route on
every gateway measured (this checkout, and the ``--baseline-python`` one when given) are loaded in turn, the order
rotating from round to round, so drift of the machine during the run hits every side alike: stop 21 saw the same
code's status ratio move from 0.76x to 0.59x when each side was measured whole, one after the other. The decision
rates are medians of as many rounds, each driving every gateway in turn. The gateway runs as deployed (``python -m
libervia serve``, access log at info, telemetry on, every decision fsynced) and rate limiting charges every tenant
request: the benchmark tenants have a limit of 10,000,000 requests per minute, which nothing here reaches (a limit
of 0 would skip the limiter). The server's own CPU time per request is printed beside each ratio: it is what a
CPU-bound server would turn into throughput on an idle machine, and other load on the machine moves it less than it
moves requests/s (on a virtual machine with noisy neighbours it still moves).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core_bench import RATE_LIMITED, _drive, _tokens
from bench.http_bench import start_bare
from bench.loadgen import SERVER_CPU, process_cpu_seconds, run_load_with_cpu
from tests.gateway_process import GatewayProcess

TARGETS = {"health": 0.85, "eventlog_status": 0.60, "metrics_17": 0.25}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


Ratio = tuple[float, list[float], float, float]


def _rotated(slots: list[Any], round_no: int) -> list[Any]:
    """``slots`` in this round's order: each round starts one further on, so no side always goes first."""
    shift = round_no % len(slots)
    return slots[shift:] + slots[:shift]


def ratio_rounds(bare_url: str, bare_pid: int, targets: list[tuple[str, int, dict[str, str]]], rounds: int,
                 seconds: float, connections: int) -> list[Ratio]:
    """For each target ``(url, pid, headers)``: the median ratio target/bare over ``rounds`` rounds, the ratio of
    each round, and the median CPU us/request of the bare app and of the target. In every round the bare app and
    every target are loaded in turn, so drift of the machine during the run hits every side alike."""
    ratios: list[list[float]] = [[] for _ in targets]
    cpu: list[list[float]] = [[] for _ in targets]
    bare_cpu: list[float] = []
    for round_no in range(rounds):
        results = {}
        for slot in _rotated(["bare", *range(len(targets))], round_no):
            if slot == "bare":
                results[slot] = run_load_with_cpu(f"{bare_url}/health", bare_pid, seconds=seconds,
                                                  connections=connections)
            else:
                url, pid, headers = targets[slot]
                results[slot] = run_load_with_cpu(url, pid, seconds=seconds, connections=connections,
                                                  headers=headers)
        bare_result, bare_us = results["bare"]
        bare_cpu.append(bare_us)
        for index, (url, _, _) in enumerate(targets):
            result, us = results[index]
            if result.errors:
                raise RuntimeError(f"{url}: {result.errors} errors under load")
            ratios[index].append(result.rps / bare_result.rps)
            cpu[index].append(us)
    return [(statistics.median(each), each, statistics.median(bare_cpu), statistics.median(cpu[index]))
            for index, each in enumerate(ratios)]


async def _create_tenants(gateway: GatewayProcess, ids: list[str], on_done: Callable[[], None]) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:
        queue = list(ids)

        async def worker() -> None:
            while queue:
                tenant = queue.pop()
                async with session.post(f"{gateway.url}/admin/tenants", headers=headers,
                                        json={"id": tenant, "name": tenant, **RATE_LIMITED}) as response:
                    assert response.status == 201, await response.text()
                # one tenant-scoped request each, so that the per-tenant series exist as in production
                async with session.get(f"{gateway.url}/admin/tenants/{tenant}", headers=headers) as response:
                    await response.read()
                on_done()

        await asyncio.gather(*(worker() for _ in range(8)))


async def scrape_cost(gateway: GatewayProcess, scrapes: int) -> tuple[float, float, int]:
    """Median client-side milliseconds per sequential scrape, server CPU ms per scrape, and the body size."""
    assert gateway.proc is not None
    headers = {"Authorization": f"Bearer {gateway.admin_token}"}
    times = []
    size = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm-up
            async with session.get(f"{gateway.url}/internal/metrics", headers=headers) as response:
                await response.read()
        cpu_before = process_cpu_seconds(gateway.proc.pid)
        for _ in range(scrapes):
            began = time.perf_counter()
            async with session.get(f"{gateway.url}/internal/metrics", headers=headers) as response:
                body = await response.read()
                assert response.status == 200
            times.append((time.perf_counter() - began) * 1000)
            size = len(body)
        cpu_ms = (process_cpu_seconds(gateway.proc.pid) - cpu_before) / scrapes * 1000
    return statistics.median(times), cpu_ms, size


async def decisions(gateways: list[GatewayProcess], seconds: float, clients: int, rounds: int
                    ) -> list[tuple[list[float], list[float]]]:
    """For each gateway, decisions/s of ``clients`` clients on one tenant and spread over as many tenants, in
    ``rounds`` rounds; every round drives each gateway and each spread in turn, the order rotating."""
    tokens = []
    for gateway in gateways:
        one = await _tokens(gateway, ["bench-one"], clients)
        spread = await _tokens(gateway, [f"bench-{i:02d}" for i in range(clients)], 1)
        await _drive(gateway.url, one, 1.0)
        await _drive(gateway.url, spread, 1.0)
        tokens.append({"one": one, "spread": spread})
    rates: list[dict[str, list[float]]] = [{"one": [], "spread": []} for _ in gateways]
    slots = [(index, side) for index in range(len(gateways)) for side in ("one", "spread")]
    for round_no in range(rounds):
        for index, side in _rotated(slots, round_no):
            result = await _drive(gateways[index].url, tokens[index][side], seconds)
            if result.errors:
                raise RuntimeError(f"decisions failed ({side}): {result.errors} errors")
            rates[index][side].append(result.rps)
    return [(each["one"], each["spread"]) for each in rates]


async def post_decisions(gateway: GatewayProcess, tokens: list[str], count: int) -> list[str]:
    """``count`` decisions spread over one client per token; the episode ids they created, oldest first."""
    from tests.core import bodies
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    body = bodies.decisao()
    remaining = count
    episodes: list[str] = []
    with tqdm(total=count, desc="decisions", unit="dec", leave=False, disable=not sys.stderr.isatty()) as bar:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(tokens))) as session:
            async def client(h: dict[str, str]) -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    async with session.post(f"{gateway.url}/api/v1/decisoes", json=body, headers=h) as response:
                        answer = await response.json()
                        assert response.status == 201, answer
                    episodes.append(answer["episodio_id"])
                    bar.update()

            await asyncio.gather(*(client(h) for h in headers))
    return episodes


async def memory_after(gateway: GatewayProcess, count: int, clients: int = 16
                       ) -> tuple[float, float, float, list[str], str]:
    """RSS before, right after ``count`` decisions on one tenant, and 5 s later (MiB); the episodes created and a
    token of the tenant."""
    assert gateway.proc is not None
    tokens = await _tokens(gateway, ["bench-memory"], clients)
    await _drive(gateway.url, tokens[:1], 0.5)
    before = rss_mb(gateway.proc.pid)
    episodes = await post_decisions(gateway, tokens, count)
    after = rss_mb(gateway.proc.pid)
    await asyncio.sleep(5)
    return before, after, rss_mb(gateway.proc.pid), episodes, tokens[0]


async def episode_reads(gateway: GatewayProcess, token: str, episodes: list[str]) -> tuple[float, float]:
    """Median client-side ms per sequential ``GET /api/v1/episodios/{id}`` over distinct ids, and the server's
    CPU us per read: each id is read once, so an old episode comes from the record index, not a cache."""
    assert gateway.proc is not None
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    async with aiohttp.ClientSession() as session:
        cpu_before = process_cpu_seconds(gateway.proc.pid)
        for episode in episodes:
            began = time.perf_counter()
            async with session.get(f"{gateway.url}/api/v1/episodios/{episode}", headers=headers) as response:
                await response.read()
                assert response.status == 200
            times.append((time.perf_counter() - began) * 1000)
        cpu_us = (process_cpu_seconds(gateway.proc.pid) - cpu_before) / len(episodes) * 1e6
    return statistics.median(times), cpu_us


async def event_listing(gateway: GatewayProcess, token: str, query: str, reads: int = 5) -> tuple[float, float]:
    """Median client-side ms per ``GET /api/v1/eventos?<query>`` and the server's CPU ms per listing."""
    assert gateway.proc is not None
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    async with aiohttp.ClientSession() as session:
        cpu_before = process_cpu_seconds(gateway.proc.pid)
        for _ in range(reads):
            began = time.perf_counter()
            async with session.get(f"{gateway.url}/api/v1/eventos?{query}", headers=headers) as response:
                await response.read()
                assert response.status == 200
            times.append((time.perf_counter() - began) * 1000)
        cpu_ms = (process_cpu_seconds(gateway.proc.pid) - cpu_before) / reads * 1000
    return statistics.median(times), cpu_ms


async def memory_at_scale(gateway: GatewayProcess, decisions: int, tenants: int
                          ) -> tuple[float, float, float, list[str]]:
    """Issue 11.5's memory figure: ``tenants`` tenants with one decision each, then ``decisions`` on one tenant.
    RSS once the small tenants are in (the idle level), right after the big load, and 10 s after it (MiB); then
    what listing that tenant's events costs."""
    assert gateway.proc is not None
    with tqdm(total=tenants, desc="tenants with one decision", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        small = [f"s{i:04d}" for i in range(tenants)]
        for start in range(0, tenants, 50):
            tokens = await _tokens(gateway, small[start:start + 50], 1)
            await post_decisions(gateway, tokens, len(tokens))
            bar.update(len(tokens))
    tokens = await _tokens(gateway, ["bench-history"], 16)
    await asyncio.sleep(2)
    idle = rss_mb(gateway.proc.pid)
    await post_decisions(gateway, tokens, decisions)
    after = rss_mb(gateway.proc.pid)
    await asyncio.sleep(10)
    settled = rss_mb(gateway.proc.pid)
    listings = []
    for title, query in (("newest page", "limit=50"), ("newest contracts", "tipo=CONTRATO_EMITIDO&limit=50")):
        ms, cpu_ms = await event_listing(gateway, tokens[0], query)
        listings.append(f"GET /api/v1/eventos, {title} of {decisions * 10:,} events   {ms:8.1f} ms each, server "
                        f"CPU {cpu_ms:.1f} ms")
    return idle, after, settled, listings


def baseline_launcher(python: str) -> tuple[str, ...]:
    """Run another checkout's gateway (its own interpreter and packages) where GatewayProcess runs ours, with
    that checkout's own settings.toml (ours names settings an older gateway does not know). ``python`` is the
    interpreter of a venv inside that checkout (``CHECKOUT/.venv/bin/python``)."""
    checkout = Path(python).absolute().parent.parent.parent
    code = ("import runpy, sys; sys.argv = ['libervia', *sys.argv[4:]]; "
            "runpy.run_module('libervia', run_name='__main__', alter_sys=True)")
    return ("env", "-u", "PYTHONPATH", f"LIBERVIA_SETTINGS_FILE={checkout / 'settings.toml'}", *SERVER_CPU,
            python, "-c", code)


class Side:
    """One gateway under measurement (this checkout or the baseline) and the lines measured of it."""

    def __init__(self, name: str, gateway: GatewayProcess) -> None:
        self.name = name
        self.gateway = gateway
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self.gateway.proc is not None
        return self.gateway.proc.pid

    def add(self, line: str) -> None:
        self.lines.append(f"[{self.name}] {line}")
        print(self.lines[-1], flush=True)


def decision_rates(sides: list[Side], args: argparse.Namespace) -> None:
    measured = asyncio.run(decisions([side.gateway for side in sides], args.decision_seconds, 16, args.rounds))
    for side, (one, spread) in zip(sides, measured, strict=True):
        rows = (("16 clients on one tenant", one, "1,500"), ("16 clients / 16 tenants ", spread, "2,000"))
        for title, rates, target in rows:
            side.add(f"POST /api/v1/decisoes, {title} {statistics.median(rates):7.0f}/s   (target >= {target}/s; "
                     f"rounds {', '.join(f'{r:.0f}' for r in rates)})")


def route_ratios(sides: list[Side], bare_url: str, bare_pid: int, args: argparse.Namespace) -> None:
    """The three HTTP ratios, every side measured in every round."""
    routes: list[tuple[str, str, str, list[dict[str, str]]]] = [
        ("health", "GET /health", "/health", [{} for _ in sides]),
        ("eventlog_status", "key-authenticated GET /api/v1/eventlog/status", "/api/v1/eventlog/status", []),
        ("metrics_17", "GET /internal/metrics (17 tenants)", "/internal/metrics",
         [{"Authorization": f"Bearer {side.gateway.admin_token}"} for side in sides]),
    ]
    for side in sides:
        asyncio.run(_create_tenants(side.gateway, [f"t{i:02d}" for i in range(17)], lambda: None))
        key = asyncio.run(side.gateway.create_key("t00", "public"))
        routes[1][3].append({"Authorization": f"Bearer {key}"})
    for _, _, path, headers in routes:  # warm-up
        for side, each in zip(sides, headers, strict=True):
            run_load_with_cpu(side.gateway.url + path, side.pid, seconds=1, connections=args.connections,
                              headers=each)
    for key_name, title, path, headers in routes:
        targets = [(side.gateway.url + path, side.pid, each) for side, each in zip(sides, headers, strict=True)]
        for side, (ratio, each_round, bare_us, gw_us) in zip(
                sides, ratio_rounds(bare_url, bare_pid, targets, args.rounds, args.seconds, args.connections),
                strict=True):
            side.add(f"{title:<48} {ratio:5.2f}x  (target >= {TARGETS[key_name]:.2f}x; rounds "
                     f"{', '.join(f'{r:.2f}' for r in each_round)}; CPU/req bare {bare_us:.0f} us, "
                     f"gateway {gw_us:.0f} us, CPU ratio {bare_us / gw_us:.2f}x)")


def scrape_and_memory(side: Side, args: argparse.Namespace) -> None:
    """The scrape at ``--tenants`` tenants, memory after ``--decisions`` decisions and old-episode reads."""
    gateway = side.gateway
    with tqdm(total=args.tenants - 17, desc="tenants", leave=False, disable=not sys.stderr.isatty()) as bar:
        asyncio.run(_create_tenants(gateway, [f"m{i:04d}" for i in range(args.tenants - 17)], bar.update))
    wall_ms, cpu_ms, size = asyncio.run(scrape_cost(gateway, 50))
    side.add(f"GET /internal/metrics with {args.tenants} tenants        {wall_ms:6.2f} ms per scrape "
             f"(server CPU {cpu_ms:.2f} ms), {size / 1000:.0f} KB   (target <= 3 ms)")
    if args.decisions:
        before, after, settled, episodes, token = asyncio.run(memory_after(gateway, args.decisions))
        side.add(f"RSS after {args.decisions} decisions on one tenant      {after - before:+7.1f} MB "
                 f"({before:.0f} -> {after:.0f} MB, {settled:.0f} MB 5 s later; target +<= 10 MB)")
        sample = min(1000, len(episodes) // 2)
        old_ms, old_cpu = asyncio.run(episode_reads(gateway, token, episodes[:sample]))
        new_ms, new_cpu = asyncio.run(episode_reads(gateway, token, episodes[-sample:]))
        side.add(f"GET /api/v1/episodios/{{id}}, {sample} oldest episodes   {old_ms:6.2f} ms each, server CPU "
                 f"{old_cpu:.0f} us; {sample} newest: {new_ms:.2f} ms, {new_cpu:.0f} us")


def measure_memory_at_scale(side_name: str, launcher: tuple[str, ...], base: Path, args: argparse.Namespace,
                            lines: list[str]) -> None:
    gateway = GatewayProcess(base, {"LOG_LEVEL": "info"}, launcher=launcher).start()
    side = Side(side_name, gateway)
    try:
        idle, after, settled, listings = asyncio.run(memory_at_scale(gateway, args.scale_decisions,
                                                                     args.scale_tenants))
    finally:
        gateway.stop()
    side.add(f"RSS with {args.scale_tenants} tenants + {args.scale_decisions} decisions on one "
             f"{after:7.1f} MB   (target <= 150 MB; idle {idle:.0f} MB, {settled:.0f} MB 10 s after, "
             f"{(settled - idle) / idle * 100:+.0f}% of idle; target within 10%)")
    for listing in listings:
        side.add(listing)
    lines.extend(side.lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=10_000, help="0 skips the memory run")
    parser.add_argument("--decision-seconds", type=float, default=5.0)
    parser.add_argument("--scale-decisions", type=int, default=100_000,
                        help="decisions on one tenant for the memory-at-scale run (0 skips it)")
    parser.add_argument("--scale-tenants", type=int, default=1000,
                        help="tenants with one decision each in the memory-at-scale run")
    parser.add_argument("--decisions-only", action="store_true",
                        help="measure only the two decision rates (pipelined commits), nothing else")
    parser.add_argument("--baseline-python", default=None,
                        help="the interpreter of another checkout (e.g. the code before a change, installed in "
                             "its own venv): its gateway is measured in the same run, against the same bare app")
    args = parser.parse_args()
    lines: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bare, bare_url = start_bare()
        run_load_with_cpu(f"{bare_url}/health", bare.pid, seconds=1, connections=args.connections)
        launchers = [("this checkout", tuple(SERVER_CPU))]
        if args.baseline_python:
            launchers.append(("baseline", baseline_launcher(args.baseline_python)))
        sides: list[Side] = []
        try:
            # Every gateway runs through the whole measurement, idle while another is loaded, so that each round
            # measures every side next to the bare app.
            for index, (name, launcher) in enumerate(launchers):
                base = Path(tmp) / f"side{index}" / "data"
                base.parent.mkdir()
                sides.append(Side(name, GatewayProcess(base, {"LOG_LEVEL": "info"}, launcher=launcher).start()))
            if not args.decisions_only:
                route_ratios(sides, bare_url, bare.pid, args)
                for side in sides:
                    scrape_and_memory(side, args)
            decision_rates(sides, args)
            for side in sides:
                lines[side.name] = side.lines
            if args.scale_decisions and not args.decisions_only:
                for side in sides:
                    side.gateway.stop()
                for index, (name, launcher) in enumerate(launchers):
                    measure_memory_at_scale(name, launcher, Path(tmp) / f"side{index}" / "scale", args,
                                            lines[name])
        finally:
            for side in sides:
                side.gateway.stop()
            bare.kill()
    print("\nsummary (shared 2-core machine; each server pinned to one core, wrk to the other; the decision "
          "clients, this Python process, are not pinned)")
    print("\n".join(line for side_lines in lines.values() for line in side_lines))


if __name__ == "__main__":
    main()
