"""Several gateway processes writing one tenant: a command validated against a state another process has since
changed is never applied as if nothing happened (append with ``expected_seq``, re-validated on conflict).

"Processes" here are two ``FileEventStore`` instances over one ``BASE_DIR`` (each has its own ``flock``, as two
processes would), and, over HTTP, two real gateway processes sharing one ``BASE_DIR``.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from libervia.core import TenantCore
from libervia.core.core import APPEND_ATTEMPTS
from libervia.errors import ApiError
from libervia.eventlog.verify import verify_full
from libervia.storage import EventDraft, TenantEventLog
from tests.core import bodies
from tests.core.conftest import CoreHarness, all_entries, default_policies, mandate_for
from tests.core.test_core_http import TenantClient
from tests.gateway_process import GatewayProcess


class HeldLog:
    """A real tenant log whose next append first waits at ``barrier``: every Core sharing the barrier has then
    validated its command before any of them appends, which is the race two processes can run into."""

    def __init__(self, log: TenantEventLog) -> None:
        self._log = log
        self.barrier: asyncio.Barrier | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    async def before_append(self) -> None:
        barrier, self.barrier = self.barrier, None
        if barrier is not None:
            await barrier.wait()

    async def append(self, drafts: Sequence[EventDraft], expected_seq: int | None = None) -> list[dict[str, Any]]:
        await self.before_append()
        return await self._log.append(drafts, expected_seq=expected_seq)

    def append_chained(self, entries: list[dict[str, Any]], lines: list[bytes]
                       ) -> asyncio.Future[list[dict[str, Any]]]:
        """The pipelined Core's append goes through the same hold as ``append``. The entries are copied now (their
        lines are already encoded): the Core folds them into its state, which may share their objects, at once."""
        kept = copy.deepcopy(entries)

        async def held() -> list[dict[str, Any]]:
            await self.before_append()
            return await self._log.append_chained(kept, lines)

        return asyncio.ensure_future(held())


class OvertakenLog(HeldLog):
    """A real tenant log that, while ``overtaking``, another process (``other``, a second store on the same files)
    appends to right before each of our appends, as a tenant hammered by other gateway processes would see it."""

    def __init__(self, log: TenantEventLog, other: TenantEventLog) -> None:
        super().__init__(log)
        self.other = other
        self.overtaking = True

    async def before_append(self) -> None:
        if self.overtaking:
            await self.other.append([EventDraft("OTHER_PROCESS_WROTE", "Thing", "t", {})])
        await super().before_append()


async def start_core(harness: CoreHarness, log: HeldLog, tenant: str = "acme") -> TenantCore:
    """A Core appending through ``log``; ``harness`` closes it."""
    core = TenantCore(tenant, log, default_policies())
    await core.start()
    harness.cores.append(core)
    return core


class TwoProcesses:
    """Two Cores for one tenant, each over its own store on the same ``BASE_DIR``."""

    def __init__(self, base_dir: Path) -> None:
        self.harnesses = (CoreHarness(base_dir), CoreHarness(base_dir))
        self.logs: list[HeldLog] = []
        self.cores: list[TenantCore] = []

    async def start(self, tenant: str = "acme") -> tuple[TenantCore, TenantCore]:
        for harness in self.harnesses:
            log = HeldLog(await harness.store.open_log(tenant))
            self.logs.append(log)
            self.cores.append(await start_core(harness, log, tenant))
        return self.cores[0], self.cores[1]

    def hold_next_appends(self) -> None:
        barrier = asyncio.Barrier(len(self.logs))
        for log in self.logs:
            log.barrier = barrier

    async def close(self) -> None:
        for harness in self.harnesses:
            await harness.close()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[TwoProcesses]:
    two = TwoProcesses(tmp_path / "data")
    yield two
    await two.close()


def consumed(entries: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["entidade_id"] for e in entries if e["evento"] == "AUTONOMY_USE_CONSUMED")


async def test_two_processes_racing_for_a_mandates_last_use_have_one_winner(processes: TwoProcesses) -> None:
    core_a, core_b = await processes.start()
    mandate = await mandate_for(core_a, maxUses=1)
    processes.hold_next_appends()
    results = await asyncio.gather(core_a.evaluate_autonomy(bodies.avaliacao(consumir=True), actor="key_a"),
                                   core_b.evaluate_autonomy(bodies.avaliacao(consumir=True), actor="key_b"))

    allowed = [r for r in results if r["permitido"]]
    refused = [r for r in results if not r["permitido"]]
    assert len(allowed) == 1 and allowed[0]["uses"] == 1 and allowed[0]["mandateExpired"] is True
    # The loser was validated again after the winner's events, and says why it is refused now.
    assert len(refused) == 1 and refused[0]["regra"] == "MANDATE_EXHAUSTED_USES"
    assert core_a.counters["appendConflicts"] + core_b.counters["appendConflicts"] == 1
    entries = await all_entries(core_a)
    assert consumed(entries) == {mandate["id"]: 1}
    assert [e["evento"] for e in entries].count("AUTONOMY_EXPIRED") == 1
    for core in (core_a, core_b):
        record = (await core.mandates())[0]
        assert record["uses"] == 1 and record["status"] == "expired"


async def test_two_processes_resuming_one_mandate_resume_it_once(processes: TwoProcesses) -> None:
    core_a, core_b = await processes.start()
    mandate_id = (await mandate_for(core_a))["id"]
    await core_b.suspend_mandate(mandate_id, "auditoria", actor="key_admin")
    processes.hold_next_appends()
    results = await asyncio.gather(core_a.resume_mandate(mandate_id, "ok", actor="key_a"),
                                   core_b.resume_mandate(mandate_id, "ok", actor="key_b"), return_exceptions=True)

    resumed = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(resumed) == 1 and resumed[0]["status"] == "active"
    assert len(refused) == 1 and (refused[0].status, refused[0].code) == (409, "INVALID_STATE")
    events = [e["evento"] for e in await all_entries(core_b)]
    assert events.count("AUTONOMY_RESUMED") == 1


async def test_many_concurrent_rounds_never_spend_more_uses_than_granted(processes: TwoProcesses) -> None:
    core_a, core_b = await processes.start()
    agents = [f"agente-{n}" for n in range(20)]
    mandates = {agent: (await mandate_for(core_a, agent, maxUses=1))["id"] for agent in agents}
    for agent in agents:
        results = await asyncio.gather(
            *[core.evaluate_autonomy(bodies.avaliacao(agent, consumir=True), actor="key_agent")
              for core in (core_a, core_b, core_a, core_b)])
        assert [r["permitido"] for r in results].count(True) == 1, results
    entries = await all_entries(core_b)
    assert consumed(entries) == {mandate_id: 1 for mandate_id in mandates.values()}
    store = processes.harnesses[0].store
    result = await verify_full(await store.open_log("acme"), await store.checkpoints("acme"), store.signer)
    assert result["valid"] and result["totalVerified"] == len(entries)


async def test_a_command_that_keeps_losing_the_race_gets_409_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("libervia.core.core.APPEND_RETRY_BUDGET_S", 0.2)  # the default outlasts a real backlog
    harness, other = CoreHarness(tmp_path / "data"), CoreHarness(tmp_path / "data")
    try:
        log = OvertakenLog(await harness.store.open_log("acme"), await other.store.open_log("acme"))
        log.overtaking = False
        core = await start_core(harness, log)
        mandate_id = (await mandate_for(core))["id"]
        log.overtaking = True
        with pytest.raises(ApiError) as caught:
            await core.suspend_mandate(mandate_id, "auditoria", actor="key_admin")
        assert (caught.value.status, caught.value.code) == (409, "CONCURRENT_UPDATE")
        attempts = core.counters["appendConflicts"]
        assert attempts >= APPEND_ATTEMPTS and caught.value.details == {"attempts": attempts}
        events = [e["evento"] for e in await all_entries(core)]
        assert events == ["AUTONOMY_GRANTED"] + ["OTHER_PROCESS_WROTE"] * attempts
        # Once the other writer pauses, the same request goes through on the newest state.
        log.overtaking = False
        assert (await core.suspend_mandate(mandate_id, "auditoria", actor="key_admin"))["status"] == "suspended"
    finally:
        await harness.close()
        await other.close()


async def until_known(client: TenantClient, patience_s: float = 10.0) -> None:
    """Wait for the client's gateway to load the keys another process created (it re-reads the shared registry
    every ``registry_refresh_s``)."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while (status := (await client.api("GET", "/eventlog/status"))[0]) == 401:
        assert asyncio.get_running_loop().time() < deadline, "the second gateway never saw the new keys"
        await asyncio.sleep(0.05)
    assert status == 200


async def test_two_gateway_processes_never_spend_more_uses_than_granted(
        gateway_factory: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    gateway_a, gateway_b = gateway_factory(base_dir=shared), gateway_factory(base_dir=shared)
    client_a = await TenantClient.create(gateway_a, "acme")
    client_b = TenantClient(gateway_b, "acme", client_a.public, client_a.admin)
    await until_known(client_b)
    max_uses, agents = 2, [f"agente-{n}" for n in range(12)]
    mandates = {}
    for agent in agents:
        status, body = await client_a.manage("POST", "/mandates", bodies.mandato(agent, maxUses=max_uses))
        assert status == 201, body
        mandates[agent] = body["id"]

    for agent in agents:
        # More requests than uses, half to each process, all at once.
        results = await asyncio.gather(
            *[client.api("POST", "/autonomia/avaliar", bodies.avaliacao(agent, consumir=True))
              for client in (client_a, client_b) * (max_uses + 1)])
        for status, body in results:
            assert status == 200 or (status, body["code"]) == (409, "CONCURRENT_UPDATE"), body
        # Each append is validated on a state holding every append before it, so the first two spend the two
        # uses and every later one is refused; a 409 needs five other appends, so at most one request gets it.
        uses = sorted(body["uses"] for status, body in results if status == 200 and body["permitido"])
        assert uses == list(range(1, max_uses + 1)), results

    log = shared / "tenants" / "acme" / "eventlog" / "events.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert consumed(entries) == {mandate_id: max_uses for mandate_id in mandates.values()}
    status, _, verify = await gateway_b.request("GET", "/admin/tenants/acme/audit/verify", gateway_b.admin_token)
    assert status == 200 and verify["valid"] is True and verify["totalVerified"] == len(entries)
