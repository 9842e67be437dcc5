"""Issue 12.3: one scrape answers the machine's totals, whichever gateway process it lands on.

Two real ``libervia serve`` processes share one BASE_DIR; requests are counted by what the clients received, and
a scrape on either must show the sum. A process killed with SIGKILL stays counted, and a process started later
folds its file away without counting it twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_process import GatewayProcess

FAST_SHARING = {"LIBERVIA_PLUGIN__TELEMETRY_PROMETHEUS__MULTIPROCESS__INTERVAL_S": "0.2"}
HEALTH = (("method", "GET"), ("route", "/health"), ("status", "200"))


async def health_count(gateway: GatewayProcess) -> float:
    status, _, text = await gateway.request("GET", "/internal/metrics", gateway.admin_token)
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "libervia_http_requests_total" and tuple(sorted(sample.labels.items())) == HEALTH:
                return sample.value
    return 0.0


async def json_health_count(gateway: GatewayProcess) -> float:
    status, _, body = await gateway.request("GET", "/internal/metrics/json", gateway.admin_token)
    assert status == 200
    family = next(m for m in body["metrics"] if m["name"] == "libervia_http_requests_total")
    return sum(v["value"] for v in family["values"] if tuple(sorted(v["labels"].items())) == HEALTH)


async def send_health(gateway: GatewayProcess, count: int) -> int:
    answered = 0
    for _ in range(count):
        answered += (await gateway.request("GET", "/health"))[0] == 200
    return answered


async def eventually(gateway: GatewayProcess, expected: float, reader: Callable = health_count) -> float:
    """The count a scrape shows once the other processes' last publication has been read (polled, bounded)."""
    deadline = time.monotonic() + 15
    seen = await reader(gateway)
    while seen != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        seen = await reader(gateway)
    return seen


async def settled(*gateways: GatewayProcess) -> float:
    """The machine's count once every process shows the same one (start-up probes are /health requests)."""
    deadline = time.monotonic() + 15
    while True:
        seen = {await health_count(g) for g in gateways}
        await asyncio.sleep(0.5)  # longer than two publication intervals
        if (len(seen) == 1 and {await health_count(g) for g in gateways} == seen) or time.monotonic() > deadline:
            return seen.pop()


async def test_a_scrape_on_either_process_shows_the_sum(gateway_factory: Callable[..., GatewayProcess],
                                                        tmp_path: Path) -> None:
    base = tmp_path / "shared" / "data"
    base.parent.mkdir()
    first = gateway_factory(FAST_SHARING, base)
    second = gateway_factory(FAST_SHARING, base)
    before = await settled(first, second)
    sent = await send_health(first, 7) + await send_health(second, 5)
    assert sent == 12
    expected = before + 12
    assert await eventually(first, expected) == expected
    assert await eventually(second, expected) == expected
    assert await eventually(second, expected, json_health_count) == expected

    # A dead process's counts stay counted.
    await send_health(second, 3)
    expected += 3
    assert await eventually(first, expected) == expected
    second.kill()
    await asyncio.sleep(0.5)
    assert await eventually(first, expected) == expected

    # A process started later folds the dead file into retired.json; nothing is counted twice.
    third = gateway_factory(FAST_SHARING, base)
    after = await settled(first, third)
    assert expected + 1 <= after <= expected + 2, (expected, after)  # + the third's own start-up probe
    expected = after
    assert not any(path.name.startswith(f"{second.proc.pid}-") for path in (base / "telemetry").iterdir())
    await send_health(third, 4)
    expected += 4
    assert await eventually(first, expected) == expected
    assert await eventually(third, expected) == expected


async def test_an_unusable_metrics_directory_costs_only_the_sharing(
        gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory({"LIBERVIA_PLUGIN__TELEMETRY_PROMETHEUS__MULTIPROCESS__DIRECTORY": "/proc/no-such/dir"})
    await send_health(gateway, 2)
    assert await health_count(gateway) >= 2
    assert any(line.get("level") == "warning" and "not shared" in line.get("msg", "")
               for line in gateway.log_lines())
