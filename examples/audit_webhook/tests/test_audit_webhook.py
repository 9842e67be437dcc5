"""The webhook forwarder on an in-process gateway, against a local HTTP receiver that fails on purpose."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import libervia_audit_webhook
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from libervia.testing import GatewayHarness, TenantAccess

pytestmark = pytest.mark.asyncio

MANDATE = {"agentId": "agente-1", "modo": "VIVENCIA_AUTONOMA", "politicas_permitidas": ["compras"],
           "perfil_risco_maximo": "MODERADO", "limites": [{"tipo": "FINANCEIRO", "valor": 5000}],
           "requer_humano_se": ["fornecedor novo"]}


class Receiver:
    """Answers each POST with the next status of ``plan`` (then ``then`` forever) and keeps what it was sent."""

    def __init__(self) -> None:
        self.plan: list[int] = []
        self.then = 200
        self.attempts: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[dict[str, Any]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts.append((request.headers["X-Libervia-Delivery"], body))
        status = self.plan.pop(0) if self.plan else self.then
        if status == 200:
            self.accepted.extend(body["events"])
        return web.json_response({}, status=status)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    receiver.server = TestServer(app, host="127.0.0.1")
    await receiver.server.start_server()
    yield receiver
    await receiver.server.close()


def settings(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    config = {"url": receiver.url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 4,
              "poll_interval_s": 0.2, **overrides}
    return {"plugin": {"audit_webhook": config}}


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def grant(tenant: TenantAccess) -> None:
    response = await tenant.tenant_admin.post(f"/admin/tenants/{tenant.tenant_id}/mandates", MANDATE)
    assert response.status == 201, await response.text()


async def head_seq(gateway: GatewayHarness, tenant_id: str) -> int:
    log = await gateway.gateway.runtime.event_log(tenant_id)
    return (await log.head()).seq


def dead_letters(base_dir: Path) -> list[dict[str, Any]]:
    path = base_dir / "plugins" / "audit_webhook" / "dead-letter.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_retries_with_backoff_then_delivers_every_event_in_order(receiver: Receiver,
                                                                       make_libervia_gateway: Any) -> None:
    receiver.plan = [503, 500]
    gateway = await make_libervia_gateway(settings(receiver), plugins=[libervia_audit_webhook])
    tenant = await gateway.create_tenant()
    await grant(tenant)
    head = await head_seq(gateway, tenant.tenant_id)
    assert head >= 1
    await until(lambda: len(receiver.accepted) >= head, "every event accepted")
    assert [event["seq"] for event in receiver.accepted] == list(range(1, head + 1))
    assert receiver.attempts[0][0] == receiver.attempts[1][0] == receiver.attempts[2][0]   # the same batch, retried
    assert all(event["hash"] and event["evento"] for event in receiver.accepted)
    assert dead_letters(gateway.base_dir) == []


async def test_a_batch_that_keeps_failing_goes_to_the_dead_letter_file(receiver: Receiver,
                                                                       make_libervia_gateway: Any) -> None:
    receiver.then = 500
    gateway = await make_libervia_gateway(settings(receiver, max_attempts=3), plugins=[libervia_audit_webhook])
    tenant = await gateway.create_tenant()
    await grant(tenant)
    head = await head_seq(gateway, tenant.tenant_id)
    await until(lambda: sum(r["lastSeq"] - r["firstSeq"] + 1 for r in dead_letters(gateway.base_dir)) >= head,
                "dead-lettered")
    record = dead_letters(gateway.base_dir)[0]
    assert record["tenantId"] == tenant.tenant_id and record["attempts"] == 3 and record["lastError"] == "HTTP 500"
    assert [event["seq"] for event in record["events"]] == list(range(record["firstSeq"], record["lastSeq"] + 1))
    assert len(receiver.attempts) == 3 * len(dead_letters(gateway.base_dir))
    # the stream goes on: once the receiver recovers, new events are delivered, the dead ones are not re-sent
    receiver.then = 200
    await grant(tenant)
    new_head = await head_seq(gateway, tenant.tenant_id)
    await until(lambda: bool(receiver.accepted) and receiver.accepted[-1]["seq"] == new_head, "new events")
    assert receiver.accepted[0]["seq"] == head + 1


async def test_a_refused_batch_is_not_retried(receiver: Receiver, make_libervia_gateway: Any) -> None:
    receiver.then = 400
    gateway = await make_libervia_gateway(settings(receiver), plugins=[libervia_audit_webhook])
    tenant = await gateway.create_tenant()
    await grant(tenant)
    head = await head_seq(gateway, tenant.tenant_id)
    await until(lambda: bool(dead_letters(gateway.base_dir))
                and dead_letters(gateway.base_dir)[-1]["lastSeq"] == head, "dead-lettered")
    records = dead_letters(gateway.base_dir)
    assert all(record["attempts"] == 1 and record["lastError"] == "HTTP 400" for record in records)
    assert len(receiver.attempts) == len(records)


async def test_cursors_survive_a_restart(receiver: Receiver, tmp_path: Path) -> None:
    base_dir = tmp_path / "data"
    async with GatewayHarness(base_dir, settings(receiver), plugins=[libervia_audit_webhook]) as gateway:
        tenant = await gateway.create_tenant("acme")
        await grant(tenant)
        head = await head_seq(gateway, "acme")
        await until(lambda: len(receiver.accepted) >= head, "delivered")
    async with GatewayHarness(base_dir, settings(receiver), plugins=[libervia_audit_webhook]) as gateway:
        token = tenant.tenant_admin.token
        await grant(TenantAccess("acme", gateway.as_role(token), gateway.as_role(None)))
        new_head = await head_seq(gateway, "acme")
        await until(lambda: receiver.accepted[-1]["seq"] == new_head, "delivered after restart")
    assert [event["seq"] for event in receiver.accepted] == list(range(1, new_head + 1))   # nothing sent twice
