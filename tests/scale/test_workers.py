"""``libervia serve --workers N``: several real worker processes on one port, counted from what clients received.

The workers share ``BASE_DIR``: the registry and every log through the file store's locks, the rate limits through
the embedded limiter's SQLite file. Each request opens its own connection (the workers take turns accepting), so
the load is spread over the workers the way a load balancer's would be.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.core import bodies
from tests.gateway_process import GatewayProcess

SLOW_PLUGIN = {"LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.slow_route_plugin"]'}


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(child) for child in text.split()}


async def wait_for_workers(master: int, count: int, without: frozenset[int] = frozenset(),
                           patience_s: float = 20) -> set[int]:
    deadline = time.monotonic() + patience_s
    while True:
        found = children(master)
        if len(found) == count and not (found & without):
            return found
        assert time.monotonic() < deadline, f"master {master} has workers {found}, wanted {count} without {without}"
        await asyncio.sleep(0.05)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(count: str = "2", extra_env: dict[str, str] | None = None, flag: bool = True) -> GatewayProcess:
        env = dict(extra_env or {})
        if not flag:
            env["LIBERVIA_WORKERS"] = count
        gateway = GatewayProcess(tmp_path / f"data{len(started)}", env,
                                 serve_args=("--workers", count) if flag else ())
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.stop()


async def fresh_request(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
                        body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"} if token else {"Connection": "close"}
    async with session.request(method, url, headers=headers, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_a_dead_worker_is_replaced_and_sigterm_drains_every_worker(workers: Any) -> None:
    gateway: GatewayProcess = workers("2", {**SLOW_PLUGIN, "LIBERVIA_SHUTDOWN_DRAIN_DELAY_S": "0.5"})
    master = gateway.proc.pid
    first = await wait_for_workers(master, 2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    replaced = await wait_for_workers(master, 2, without=frozenset({victim}))
    assert len(replaced & first) == 1
    exits = [line for line in gateway.log_lines() if line.get("event") == "worker_exited"]
    assert [(line["pid"], line["replaced"], line["level"]) for line in exits] == [(victim, True, "warning")]

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*[fresh_request(session, "GET", gateway.url + "/health") for _ in range(20)])
        assert {status for status, _ in statuses} == {200}
        slow = [asyncio.ensure_future(session.get(gateway.url + "/test/slow?s=2", headers={"Connection": "close"}))
                for _ in range(4)]
        await asyncio.sleep(0.5)
        gateway.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        readiness = await asyncio.gather(*[fresh_request(session, "GET", gateway.url + "/health/ready")
                                           for _ in range(4)])
        assert {status for status, _ in readiness} == {503}  # whichever worker answered was draining
        assert all(body["checks"]["process"]["ok"] is False for _, body in readiness)
        for response in await asyncio.gather(*slow):
            assert response.status == 200
            assert (await response.json())["slept"] == 2
    assert await asyncio.to_thread(gateway.proc.wait, 30) == 0
    lines = gateway.log_lines()  # every line of master and workers parses as JSON
    assert Counter(line["pid"] for line in lines if line["msg"] == "shutdown complete").keys() == replaced
    assert all(not children(pid) for pid in replaced)


async def test_workers_setting_zero_means_one_per_cpu(workers: Any) -> None:
    gateway: GatewayProcess = workers("0", flag=False)
    await wait_for_workers(gateway.proc.pid, len(os.sched_getaffinity(0)))
    assert gateway.stop() == 0


def test_negative_workers_is_refused(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data", serve_args=("--workers", "-1"))
    with pytest.raises(RuntimeError, match="exited with 2"):
        gateway.start()
    assert "workers" in gateway.stderr()


async def known_everywhere(gateway: GatewayProcess, session: aiohttp.ClientSession) -> None:
    """Wait until every worker has loaded the registry as it is now: a probe key created last works on each."""
    await gateway.create_tenant(probe := f"probe-{os.urandom(3).hex()}")
    token = await gateway.create_key(probe)
    url = gateway.url + "/api/v1/eventlog/status"
    deadline = time.monotonic() + 10
    while {status for status, _ in await asyncio.gather(
            *[fresh_request(session, "GET", url, token) for _ in range(10)])} != {200}:
        assert time.monotonic() < deadline, "a worker never loaded the registry"


async def test_a_tenant_gets_its_limit_once_across_workers(workers: Any) -> None:
    gateway: GatewayProcess = workers("2")
    await gateway.create_tenant("limited", quotas={"rateLimitRpm": 600})
    token = await gateway.create_key("limited")
    url = gateway.url + "/api/v1/eventlog/status"
    connector = aiohttp.TCPConnector(limit=16, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await known_everywhere(gateway, session)
        started = time.monotonic()
        results = await asyncio.gather(*[fresh_request(session, "GET", url, token) for _ in range(900)])
        elapsed = time.monotonic() - started
    counts = Counter(status for status, _ in results)
    assert set(counts) <= {200, 429}, counts
    # GCRA: a burst of 600, then 10 per second flow back. Two unshared workers would have let about 1200 through.
    ceiling = 600 + 10 * elapsed + 1
    # Unshared limiters would let all 900 through: the bound only proves sharing while it stays below that.
    assert ceiling < 900, f"the run took {elapsed:.1f} s: too slow to tell a shared limit from none"
    assert 600 * 0.95 <= counts[200] <= ceiling, (counts, elapsed)


async def test_a_revoked_key_is_refused_by_every_worker_within_a_second(workers: Any) -> None:
    gateway: GatewayProcess = workers("2")
    await gateway.create_tenant("revoked")
    status, _, key = await gateway.request("POST", "/admin/tenants/revoked/keys", gateway.admin_token,
                                           json={"role": "public"})
    assert status == 201
    url = gateway.url + "/api/v1/eventlog/status"
    async with aiohttp.ClientSession() as session:
        await known_everywhere(gateway, session)
        results = await asyncio.gather(*[fresh_request(session, "GET", url, key["token"]) for _ in range(10)])
        assert {status for status, _ in results} == {200}
        status, _, _ = await gateway.request("POST", f"/admin/tenants/revoked/keys/{key['keyId']}/revoke",
                                             gateway.admin_token)
        assert status == 200
        await asyncio.sleep(1.0)
        results = await asyncio.gather(*[fresh_request(session, "GET", url, key["token"]) for _ in range(20)])
    assert {(status, body["code"]) for status, body in results} == {(401, "INVALID_TOKEN")}


async def test_a_hot_tenant_written_through_every_worker_gets_only_2xx_and_one_chain(workers: Any) -> None:
    gateway: GatewayProcess = workers("2")
    await gateway.create_tenant("hot", quotas={"rateLimitRpm": 0})
    token = await gateway.create_key("hot")
    url = gateway.url + "/api/v1/decisoes"

    async with aiohttp.ClientSession() as session:
        await known_everywhere(gateway, session)

        async def client() -> list[int]:
            return [(await fresh_request(session, "POST", url, token, bodies.decisao()))[0] for _ in range(8)]

        statuses = Counter(s for batch in await asyncio.gather(*[client() for _ in range(16)]) for s in batch)
    assert statuses == {201: 128}, statuses
    status, _, verify = await gateway.request("GET", "/admin/tenants/hot/audit/verify", gateway.admin_token)
    assert status == 200 and verify["valid"] is True
    log = gateway.base_dir / "tenants" / "hot" / "eventlog" / "events.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    assert verify["totalVerified"] == len(entries)
    assert sum(1 for entry in entries if entry["evento"] == "DECISAO_REGISTRADA") == 128


async def test_a_tenant_created_through_one_worker_is_known_at_once_to_the_others(workers: Any) -> None:
    gateway: GatewayProcess = workers("2")
    async with aiohttp.ClientSession() as session:
        for n in range(10):
            # Each request on a connection of its own: the next one may land on the other worker at once.
            status, _ = await fresh_request(session, "POST", gateway.url + "/admin/tenants", gateway.admin_token,
                                            {"id": f"at-once-{n}", "name": "x"})
            assert status == 201
            status, body = await fresh_request(session, "POST", gateway.url + f"/admin/tenants/at-once-{n}/keys",
                                               gateway.admin_token, {"role": "public"})
            assert status == 201, body


def test_a_worker_that_cannot_start_stops_the_master_with_one_clear_line(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data", {
        "LIBERVIA_STORAGE": "storage_postgres",
        "LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN": "postgresql://libervia:s3cret-pw@127.0.0.1:1/test",
        "LIBERVIA_PLUGIN__STORAGE_POSTGRES__CONNECT_TIMEOUT_S": "1",
    }, serve_args=("--workers", "2"))
    with pytest.raises(RuntimeError, match="exited with 3"):
        gateway.start()
    assert any(line["msg"].startswith("worker cannot start: storage: cannot connect to PostgreSQL")
               for line in gateway.log_lines())
    for text in (gateway.log_text(), gateway.stderr()):
        assert "Traceback" not in text and "s3cret-pw" not in text
