"""libervia.client against a real gateway: every route group, typed errors, 429 retries, timeouts; and the CLI's
admin subcommands built on it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from libervia.client import ApiError, AsyncClient, Client, RateLimited, RequestTimeout, TransportError
from tests.core import bodies
from tests.gateway_process import REPO_ROOT, GatewayProcess


def test_sync_client_covers_the_api(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    tenant = unique_id("cli-sync")
    with Client(gateway_server.url, gateway_server.admin_token) as admin:
        assert admin.health()["status"] == "ok" and admin.ready()["status"] == "ok"
        assert admin.openapi()["openapi"].startswith("3.1")
        created = admin.create_tenant(tenant, "Sync", quotas={"rateLimitRpm": 0})
        assert created["id"] == tenant and created["status"] == "active"
        assert admin.update_tenant(tenant, name="Sync 2")["name"] == "Sync 2"
        assert tenant in {t["id"] for t in admin.list_tenants(limit=200)}
        owner = admin.create_key(tenant, "tenant_admin")
        public = admin.create_key(tenant, "public", "integration")
        assert "Save this token" in public["warning"]
        assert {k["keyId"] for k in admin.list_keys(tenant)["keys"]} == {owner["keyId"], public["keyId"]}
        assert admin.metrics_summary()["tenants"]["registered"] >= 1
        assert "libervia_http_requests_total" in admin.prometheus_metrics()

    with Client(gateway_server.url, public["token"]) as api, Client(gateway_server.url, owner["token"]) as mgr:
        decision = api.decide(**bodies.decisao())
        episodio = decision["episodio_id"]
        assert api.episode(episodio)["estado"] == "DECIDIDO"
        observed = api.observe(episodio)
        assert observed["estado"] == "EM_OBSERVACAO" and observed["success"] is True
        assert api.close_episode(episodio)["estado"] == "ENCERRADO"
        mandate = mgr.grant_mandate(tenant, bodies.mandato())
        assert api.evaluate_autonomy(bodies.avaliacao())["permitido"] is True
        recorded = api.record_consequence(bodies.consequencia(
            decision["contrato"]["id"], agentId="agente-1",
            autonomyTriggers={"severidade": "MEDIA", "violou_limites": True}))
        review = recorded["autonomy"]["reviewCaseId"]
        assert api.events(limit=5)["total"] >= 5 and api.eventlog_status()["enabled"] is True
        assert mgr.update_review_notes(tenant, review, "looking")["notes"] == "looking"
        assert mgr.resolve_review(tenant, review, "APPROVE", "ok", ["RESUME_MANDATE"])["status"] == "RESOLVED"
        second = mgr.open_review(tenant, recorded["observacao"]["id"], "again")
        assert mgr.dismiss_review(tenant, second["id"], "no")["status"] == "DISMISSED"
        assert mgr.suspend_mandate(tenant, mandate["id"], "pause")["status"] == "suspended"
        assert mgr.resume_mandate(tenant, mandate["id"], "go")["status"] == "active"
        assert mgr.query_mandate(tenant, mandate["id"])["mandate"]["id"] == mandate["id"]
        assert mgr.revoke_mandate(tenant, mandate["id"], "done")["status"] == "revoked"
        assert mgr.query_mandates(tenant, status="revoked")["total"] == 1
        assert mgr.query_reviews(tenant, status="DISMISSED")["total"] == 1
        assert mgr.query_review(tenant, review)["reviewCase"]["id"] == review
        assert mgr.query_consequences(tenant, contrato_id=decision["contrato"]["id"])["total"] == 1
        assert mgr.query_consequence(tenant, recorded["observacao"]["id"])["observacao"]["id"]
        assert mgr.dashboard(tenant)["tenantId"] == tenant
        assert mgr.verify(tenant)["valid"] is True and mgr.verify(tenant, fast=True)["valid"] is True
        export = mgr.export(tenant, from_seq=1, to_seq=3)
        assert export["manifest"]["count"] == 3
        streamed = list(mgr.iter_export(tenant))
        assert streamed[-1]["manifest"]["chainValidWithinExport"] is True
        assert [e["seq"] for e in streamed[:-1]] == list(range(1, len(streamed)))
        assert mgr.replay(tenant)["totalEventos"] == len(streamed) - 1
        assert mgr.checkpoints(tenant)["tenant"] == tenant
        assert mgr.tenant_events(tenant, limit=2)["count"] == 2
        assert mgr.tenant_runtime_metrics(tenant)["running"] is True

    with Client(gateway_server.url, gateway_server.admin_token) as admin:
        assert tenant in admin.instances()["activeInstances"]
        assert admin.runtime_health()["status"] in ("ok", "degraded")
        assert admin.runtime_metrics()["totalTenants"] >= 1 and admin.query_metrics()["activeTenants"] >= 1
        assert any(row["id"] == tenant for row in admin.query_tenants())
        assert admin.query_instances()["total"] >= 1
        assert admin.query_eventlog(tenant_id=tenant, event_type="KEY_CREATED")["total"] == 2
        assert admin.metrics_json()["metrics"] and admin.tenant_metrics_json(tenant)["metrics"]
        assert admin.operational_health()["status"] in ("OK", "DEGRADED", "CRITICAL")
        assert admin.rotate_keys(tenant, "public")["revokedKeyIds"] == [public["keyId"]]
        assert admin.revoke_key(tenant, owner["keyId"])["status"] == "revoked"
        assert admin.shutdown_tenant(tenant)["success"] is True
        assert admin.suspend_tenant(tenant, "billing")["tenant"]["status"] == "suspended"
        assert admin.resume_tenant(tenant)["tenant"]["status"] == "active"
        assert admin.delete_tenant(tenant)["success"] is True
        assert admin.purge_tenant(tenant)["success"] is True
        with pytest.raises(ApiError) as gone:
            admin.get_tenant(tenant)
        assert (gone.value.status, gone.value.code) == (404, "TENANT_NOT_FOUND")


async def test_async_client_and_typed_errors(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    tenant = unique_id("cli-async")
    async with AsyncClient(gateway_server.url, gateway_server.admin_token) as admin:
        await admin.create_tenant(tenant, "Async")
        with pytest.raises(ApiError) as exists:
            await admin.create_tenant(tenant, "Again")
        assert (exists.value.status, exists.value.code) == (409, "TENANT_EXISTS")
        assert exists.value.request_id and exists.value.message
        with pytest.raises(ApiError) as missing:
            await admin.get_tenant(unique_id("nobody"))
        assert missing.value.code == "TENANT_NOT_FOUND" and missing.value.request_id.startswith("req_")
        with pytest.raises(ApiError) as invalid:
            await admin.list_tenants(limit=0)
        assert invalid.value.code == "VALIDATION_ERROR" and invalid.value.details[0]["path"] == "$.limit"
        key = await admin.create_key(tenant, "public")
    async with AsyncClient(gateway_server.url, gateway_server.admin_token, tenant=tenant) as admin:
        with pytest.raises(ApiError) as forbidden:
            await admin.events()  # the global admin may not use /api/v1
        assert (forbidden.value.status, forbidden.value.code) == (403, "INSUFFICIENT_ROLE")
    async with AsyncClient(gateway_server.url, key["token"], tenant=tenant) as api:
        assert (await api.events())["eventos"][0]["evento"] == "KEY_CREATED"
        assert (await api.eventlog_status())["events"] >= 1
        with pytest.raises(ApiError) as refused:
            await api.list_tenants()
        assert (refused.value.status, refused.value.code) == (403, "INSUFFICIENT_ROLE")
    async with AsyncClient(gateway_server.url, "wrong-token-" + "x" * 30) as stranger:
        with pytest.raises(ApiError) as denied:
            await stranger.list_tenants()
        assert (denied.value.status, denied.value.code) == (401, "INVALID_TOKEN")
        assert not isinstance(denied.value, RateLimited)


async def test_rate_limited_calls_are_retried_after_retry_after(gateway_server: GatewayProcess,
                                                               unique_id: Callable[[str], str]) -> None:
    tenant = unique_id("cli-429")
    await gateway_server.create_tenant(tenant, quotas={"rateLimitRpm": 60})
    token = await gateway_server.create_key(tenant, "public")
    async with AsyncClient(gateway_server.url, token, max_retries=0) as impatient:
        with pytest.raises(RateLimited) as limited:
            for _ in range(70):  # a burst of 60 is allowed, then one request per second
                await impatient.events()
        assert limited.value.code == "RATE_LIMITED" and limited.value.retry_after and limited.value.retry_after > 0
    async with AsyncClient(gateway_server.url, token, max_retries=5) as patient:
        results = [await patient.events() for _ in range(2)]
    assert all(r["eventos"][0]["evento"] == "KEY_CREATED" for r in results)
    refused = [line for line in gateway_server.log_lines()
               if line.get("tenantId") == tenant and line.get("statusCode") == 429]
    assert len(refused) >= 2  # one for the impatient client, at least one retried by the patient one


async def test_timeouts_and_unreachable_gateways_raise_transport_errors(unused_tcp_port: int) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/health", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        async with AsyncClient(f"http://127.0.0.1:{unused_tcp_port}", timeout=0.3) as client:
            with pytest.raises(RequestTimeout):
                await client.health()
    finally:
        await runner.cleanup()
    async with AsyncClient(f"http://127.0.0.1:{unused_tcp_port}", timeout=2) as client:
        with pytest.raises(TransportError):
            await client.health()


def _cli(gateway: GatewayProcess, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "LIBERVIA_ADMIN_TOKEN")}
    env.update({"LIBERVIA_URL": gateway.url, "ADMIN_TOKEN": token or gateway.admin_token,
                "PYTHONPATH": str(REPO_ROOT)})
    return subprocess.run([sys.executable, "-m", "libervia", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=REPO_ROOT)


def test_cli_admin_subcommands(gateway_server: GatewayProcess, unique_id: Callable[[str], str],
                               tmp_path: Path) -> None:
    tenant = unique_id("cli-cmd")
    done = _cli(gateway_server, "tenants", "create", tenant, "--name", "CLI", "--rate-limit-rpm", "0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["quotas"]["rateLimitRpm"] == 0
    listed = json.loads(_cli(gateway_server, "tenants", "list", "--limit", "200").stdout)
    assert tenant in {t["id"] for t in listed}
    again = _cli(gateway_server, "tenants", "create", tenant)
    assert again.returncode == 1 and "409 TENANT_EXISTS" in again.stderr and "request req_" in again.stderr
    key = json.loads(_cli(gateway_server, "keys", "create", tenant, "--role", "tenant_admin").stdout)
    assert key["token"] and "Save this token" in key["warning"]
    rotated = json.loads(_cli(gateway_server, "keys", "rotate", tenant, "--role", "tenant_admin").stdout)
    assert rotated["revokedKeyIds"] == [key["keyId"]]
    keys = json.loads(_cli(gateway_server, "keys", "list", tenant, token=rotated["token"]).stdout)
    assert {k["keyId"]: k["status"] for k in keys["keys"]} == {key["keyId"]: "revoked", rotated["keyId"]: "active"}
    second = json.loads(_cli(gateway_server, "keys", "create", tenant).stdout)
    revoked = _cli(gateway_server, "keys", "revoke", tenant, second["keyId"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"

    verify = _cli(gateway_server, "audit", "verify", tenant, "--url", gateway_server.url)
    assert verify.returncode == 0 and json.loads(verify.stdout)["valid"] is True
    target = tmp_path / "export.ndjson"
    exported = _cli(gateway_server, "audit", "export", tenant, "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[-1]["manifest"]["count"] == len(lines) - 1 >= 4 and lines[-1]["manifest"]["chainValidWithinExport"]
    assert _cli(gateway_server, "audit", "verify", unique_id("ghost")).returncode == 1

    assert json.loads(_cli(gateway_server, "tenants", "suspend", tenant, "--reason", "x").stdout)["success"]
    assert json.loads(_cli(gateway_server, "tenants", "resume", tenant).stdout)["tenant"]["status"] == "active"
    assert json.loads(_cli(gateway_server, "tenants", "delete", tenant).stdout)["success"]
    denied = _cli(gateway_server, "tenants", "list", token="not-a-token-" + "z" * 30)
    assert denied.returncode == 1 and "401 INVALID_TOKEN" in denied.stderr
