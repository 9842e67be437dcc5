"""Drive an HTTP endpoint with concurrent keep-alive load: wrk when installed, else a Python generator.

Both report requests/s and p50/p99 latency. Every run is bounded in time and only targets loopback.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

WRK_LUA = """
local hdrs = {}
{headers}
wrk.headers = hdrs
done = function(summary, latency, requests)
  io.write(string.format("LIBERVIA p50=%f p99=%f requests=%d errors=%d non2xx=%d\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def _pin(cpu: int) -> list[str]:
    """On a machine with two or more cores, the load generator and the server under test get a core each, so
    that they do not steal time from each other and runs can be compared."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


LOADGEN_CPU = _pin(0)
SERVER_CPU = _pin(1)


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_load(url: str, *, seconds: float = 5.0, connections: int = 32, headers: dict[str, str] | None = None,
             threads: int = 1) -> LoadResult:
    assert url.startswith(("http://127.", "http://localhost", "http://[::1]")), "load only goes to loopback"
    if shutil.which("wrk"):
        return _run_wrk(url, seconds, connections, headers or {}, threads)
    return asyncio.run(_run_python(url, seconds, connections, headers or {}))


def _run_wrk(url: str, seconds: float, connections: int, headers: dict[str, str], threads: int) -> LoadResult:
    import tempfile

    lines = "\n".join(f'hdrs["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA.replace("{headers}", lines))
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds only
    command = [*LOADGEN_CPU, "wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "-s", script.name, url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _show_progress_while(proc, seconds, url)
        out, err = proc.communicate(timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()}")
    match = re.search(r"LIBERVIA p50=([\d.]+) p99=([\d.]+) requests=(\d+) errors=(\d+) non2xx=(\d+)", out)
    assert match, out
    took = re.search(r"requests in ([\d.]+)(ms|s|m)", out)
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}
    duration = float(took.group(1)) * scale[took.group(2)] if took else seconds
    return LoadResult("wrk", int(match.group(3)), duration, float(match.group(1)), float(match.group(2)),
                      int(match.group(4)) + int(match.group(5)))


def _show_progress_while(proc: subprocess.Popen[str], seconds: float, url: str) -> None:
    """A time bar on a terminal while the load runs; nothing when output is not a terminal."""
    if not sys.stderr.isatty():
        return
    with tqdm(total=round(seconds, 1), desc=f"load {url}", unit="s", leave=False,
              bar_format="{desc} {bar} {n:.0f}/{total:.0f} s") as bar:
        began = time.monotonic()
        while proc.poll() is None and bar.n < bar.total:
            time.sleep(0.25)
            bar.update(min(bar.total, time.monotonic() - began) - bar.n)


async def _run_python(url: str, seconds: float, connections: int, headers: dict[str, str]) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status >= 400:
                    errors += 1
            latencies.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult("python", len(latencies), elapsed, quantiles[49], quantiles[98], errors)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load_with_cpu(url: str, pid: int, **kwargs: Any) -> tuple[LoadResult, float]:
    """One load run, and the server's CPU microseconds per request during it: a figure that other load on the
    machine barely moves, unlike requests/s."""
    before = process_cpu_seconds(pid)
    result = run_load(url, **kwargs)
    return result, (process_cpu_seconds(pid) - before) / max(1, result.requests) * 1e6
