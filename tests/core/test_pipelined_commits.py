"""Pipelined commits within a tenant (issue 11.2): concurrent commands of one tenant validate against the
entries still being written and share the next group commit; each answers only once its own entries are durable;
a write that fails takes down exactly the commands chained on it (they are validated again on the durable state).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from libervia.errors import ApiError
from libervia.eventlog.verify import verify_full
from libervia.storage import StorageError
from tests.core import bodies
from tests.core.bodies import decisao
from tests.core.conftest import CoreHarness
from tests.eventlog.test_gateway_crash import logged_episodes
from tests.gateway_process import GatewayProcess

CONCURRENT = 64


async def post_decisions(gateway: GatewayProcess, token: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    """``count`` decisions on one tenant, all in flight at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count)) as session:
        async def one() -> tuple[int, dict[str, Any]]:
            async with session.post(f"{gateway.url}/api/v1/decisoes", json=decisao(),
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                return response.status, await response.json()

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def tenant_metrics(gateway: GatewayProcess, tenant: str) -> dict[str, Any]:
    status, _, metrics = await gateway.request("GET", f"/admin/tenants/{tenant}/metrics", gateway.admin_token)
    assert status == 200 and metrics["running"] is True, metrics
    return metrics


async def decisions_sharing_writes(gateway: GatewayProcess, tenant: str) -> tuple[str, list[dict[str, Any]]]:
    """Create the tenant, post :data:`CONCURRENT` decisions to it at once, check that all were acknowledged and
    that they shared durable writes; answer the tenant's key and the decisions' bodies."""
    await gateway.create_tenant(tenant, quotas={"rateLimitRpm": 0})
    token = await gateway.create_key(tenant, "public")
    results = await post_decisions(gateway, token, CONCURRENT)
    assert [status for status, _ in results] == [201] * CONCURRENT, results[:3]
    metrics = await tenant_metrics(gateway, tenant)
    # Every decision is one batch of the tenant's log (the tenant's creation may be one more); with one fsync per
    # command (no pipelining) there would be as many durable writes as batches.
    assert metrics["logGroupWrites"] < CONCURRENT <= metrics["logBatchesWritten"], metrics
    assert metrics["appendsInFlight"] == 0
    return token, [body for _, body in results]


async def test_concurrent_decisions_on_one_tenant_share_fsyncs_and_survive_kill_9(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    tenant = "pipelined"
    token, results = await decisions_sharing_writes(gateway, tenant)

    acknowledged = {body["episodio_id"] for body in results}
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(10)
    gateway.start()
    status, _, verdict = await gateway.request("GET", f"/admin/tenants/{tenant}/audit/verify", gateway.admin_token)
    assert status == 200 and verdict["valid"] is True, verdict
    assert acknowledged <= logged_episodes(gateway.base_dir, tenant)
    for episode_id in list(acknowledged)[:5]:
        status, _, episode = await gateway.request("GET", f"/api/v1/episodios/{episode_id}", token)
        assert status == 200 and episode["episodio_id"] == episode_id


class FailingFsync:
    """``os.fsync`` whose next call on the log file blocks until released, then fails with EIO (a disk error
    while the group is being made durable); every other call is the real one."""

    def __init__(self, events_path: Path) -> None:
        self._real = os.fsync
        self._events = events_path
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, fd: int) -> None:
        if self.armed and os.path.samestat(os.fstat(fd), os.stat(self._events)):
            self.armed = False
            self.reached.set()
            self.release.wait(30)
            raise OSError(errno.EIO, "injected fsync failure")
        self._real(fd)


async def test_a_failed_write_fails_only_the_commands_chained_on_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = CoreHarness(tmp_path / "data")
    try:
        core = await harness.open()
        suspended = (await core.grant_mandate(bodies.mandato("agente-1"), actor="key_admin"))["id"]
        independent = (await core.grant_mandate(bodies.mandato("agente-2", maxUses=5), actor="key_admin"))["id"]
        log_path = harness.store.layout.tenant("acme", create=False).events
        fsync = FailingFsync(log_path)
        monkeypatch.setattr(os, "fsync", fsync)
        fsync.armed = True

        # The suspension's write is held at its fsync; the resumption validates against the suspended mandate
        # (it depends on the write), the evaluation of the other mandate does not, but is chained after it.
        suspend = asyncio.ensure_future(core.suspend_mandate(suspended, "auditoria", actor="key_admin"))
        await asyncio.get_running_loop().run_in_executor(None, fsync.reached.wait, 30)
        resume = asyncio.ensure_future(core.resume_mandate(suspended, "ok", actor="key_admin"))
        evaluate = asyncio.ensure_future(core.evaluate_autonomy(bodies.avaliacao("agente-2", consumir=True),
                                                                actor="key_agent"))
        while core.metrics()["appendsInFlight"] < 3:  # both validated on the pipelined state, neither answered
            await asyncio.sleep(0)
        assert not resume.done() and not evaluate.done()
        fsync.release.set()
        results = await asyncio.gather(suspend, resume, evaluate, return_exceptions=True)

        assert isinstance(results[0], StorageError)
        # Validated again on the durable state, where the mandate was never suspended.
        assert isinstance(results[1], ApiError) and (results[1].status, results[1].code) == (409, "INVALID_STATE")
        assert isinstance(results[2], dict) and results[2]["permitido"] is True
        assert core.counters["appendConflicts"] >= 2

        entries = [entry async for entry in core.log.entries()]
        assert [e["evento"] for e in entries][:2] == ["AUTONOMY_GRANTED", "AUTONOMY_GRANTED"]
        assert not any(e["evento"] in ("AUTONOMY_SUSPENDED", "AUTONOMY_RESUMED") for e in entries)
        assert (await core.mandate(suspended))["status"] == "active"
        assert (await core.mandate(independent))["uses"] == 1
        result = await verify_full(core.log, await harness.store.checkpoints("acme"), harness.store.signer)
        assert result["valid"] and result["totalVerified"] == len(entries), result

        # A fresh Core on the same files rebuilds exactly the state the live one answers with.
        live = await core.summary()
        restarted = await harness.restart(core)
        assert await restarted.summary() == live
        assert (await restarted.mandate(independent))["uses"] == 1
    finally:
        await harness.close()
