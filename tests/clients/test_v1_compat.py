"""What a v1 client reads is still there, with its v1 name and meaning (issue 16 item 1), on a real gateway."""

from __future__ import annotations

from collections.abc import Callable

from libervia.clock import parse_iso
from tests.core import bodies
from tests.core.test_core_http import TenantClient
from tests.gateway_process import GatewayProcess


async def _tenant_with_history(gateway: GatewayProcess, tenant: str) -> tuple[TenantClient, dict[str, str]]:
    """A tenant with a closed episode, a suspended mandate, its open review case and two consequences."""
    client = await TenantClient.create(gateway, tenant)
    status, decision = await client.api("POST", "/decisoes", bodies.decisao())
    assert status == 201, decision
    episodio_id, contrato_id = decision["episodio_id"], decision["contrato"]["id"]
    status, observed = await client.api("POST", "/observacoes", {"episodio_id": episodio_id})
    assert status == 200 and observed["success"] is True and observed["message"]
    assert observed["estado"] == "EM_OBSERVACAO"
    status, closed = await client.api("POST", f"/episodios/{episodio_id}/encerrar")
    assert status == 200 and closed["success"] is True and closed["message"] and closed["estado"] == "ENCERRADO"
    status, mandate = await client.manage("POST", "/mandates", bodies.mandato())
    assert status == 201
    status, recorded = await client.api("POST", "/consequencias", bodies.consequencia(
        contrato_id, agentId="agente-1", autonomyTriggers={"severidade": "MEDIA", "violou_limites": True}))
    assert status == 201, recorded
    return client, {"contrato": contrato_id, "mandate": mandate["id"], "review": recorded["autonomy"]["reviewCaseId"],
                    "consequence": recorded["observacao"]["id"]}


async def test_panel_views_carry_v1_fields(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    client, ids = await _tenant_with_history(gateway_server, unique_id("vone"))
    admin = gateway_server.admin_token

    dashboard = await client.query("/dashboard")
    assert dashboard["tenantId"] == client.tenant
    assert dashboard["tenant"] == {"id": client.tenant, "name": client.tenant, "status": "active"}
    assert {"active", "suspended", "total"} <= dashboard["mandates"].keys()
    parse_iso(dashboard["timestamp"])
    assert dashboard["recentEvents"] and all({"evento", "entidade", "ts", "timestamp"} <= e.keys()
                                             for e in dashboard["recentEvents"])

    detail = await client.query(f"/mandates/{ids['mandate']}")
    assert detail["mandate"]["id"] == ids["mandate"] == detail["id"]
    assert isinstance(detail["history"], list) and detail["history"]
    assert detail["mandate"]["createdAt"] == detail["mandate"]["grantedAt"]
    review = await client.query(f"/reviews/{ids['review']}")
    assert review["reviewCase"]["id"] == ids["review"] == review["id"]
    assert review["reviewCase"]["createdAt"] == review["opened_at"]
    consequence = await client.query(f"/consequences/{ids['consequence']}")
    assert consequence["observacao"]["id"] == ids["consequence"] == consequence["id"]

    listed = await client.query("/mandates?status=suspended")
    assert [m["id"] for m in listed["mandates"]] == [ids["mandate"]] and listed["mandates"][0]["createdAt"]
    assert (await client.query("/mandates?status=active"))["mandates"] == []
    reviews = await client.query("/reviews?status=OPEN")
    assert [r["id"] for r in reviews["reviews"]] == [ids["review"]] and reviews["reviews"][0]["createdAt"]
    assert (await client.query("/reviews?status=RESOLVED"))["total"] == 0
    by_contract = await client.query(f"/consequences?contratoId={ids['contrato']}")
    assert [c["id"] for c in by_contract["consequences"]] == [ids["consequence"]]
    assert (await client.query("/consequences?contratoId=ctr_none"))["total"] == 0

    status, _, events = await gateway_server.request("GET", f"/admin/tenants/{client.tenant}/events", admin)
    assert status == 200 and all(e["timestamp"] == e["ts"] for e in events["events"])
    status, _, export = await gateway_server.request("GET", f"/admin/tenants/{client.tenant}/audit/export", admin)
    assert status == 200 and all(e["timestamp"] == e["ts"] for e in export["entries"])

    status, _, key = await gateway_server.request("POST", f"/admin/tenants/{client.tenant}/keys", admin,
                                                  json={"role": "public"})
    assert status == 201 and "Save this token" in key["warning"]


async def test_panel_event_log_is_v1_shaped_and_filtered(gateway_server: GatewayProcess,
                                                         unique_id: Callable[[str], str]) -> None:
    client, _ = await _tenant_with_history(gateway_server, unique_id("vlog"))
    admin = gateway_server.admin_token
    base = f"/admin/query/eventlog?tenantId={client.tenant}"
    status, _, whole = await gateway_server.request("GET", base + "&limit=200", admin)
    assert status == 200 and whole["total"] == whole["eventCount"] == len(whole["events"])
    assert [e["seq"] for e in whole["events"]] == list(range(1, whole["total"] + 1))  # oldest first
    status, _, page = await gateway_server.request("GET", base + "&limit=2&offset=1", admin)
    assert status == 200 and (page["limit"], page["offset"], page["total"]) == (2, 1, whole["total"])
    assert [e["seq"] for e in page["events"]] == [2, 3]
    status, _, keys = await gateway_server.request("GET", base + "&eventType=KEY_CREATED", admin)
    assert status == 200 and keys["total"] == 2 and {e["evento"] for e in keys["events"]} == {"KEY_CREATED"}
    status, _, mandates = await gateway_server.request("GET", base + "&entityType=AutonomyMandate", admin)
    assert status == 200 and mandates["total"] >= 1
    assert {e["entidade"] for e in mandates["events"]} == {"AutonomyMandate"}
    status, _, everyone = await gateway_server.request("GET", "/admin/query/eventlog?eventType=KEY_CREATED&limit=200",
                                                       admin)
    assert status == 200 and "eventlogs" in everyone
    mine = [e for e in everyone["events"] if e["tenant"] == client.tenant]
    assert len(mine) == 2 and everyone["total"] >= 2
    stamps = [e["ts"] for e in everyone["events"]]
    assert stamps == sorted(stamps)


async def test_gateway_views_carry_v1_fields(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("vinst"))
    await client.api("POST", "/decisoes", bodies.decisao())
    admin = gateway_server.admin_token
    for path in ("/admin/instances", "/admin/query/instances"):
        status, _, body = await gateway_server.request("GET", path, admin)
        assert status == 200 and body["total"] == body["count"] == len(body["instances"]) == body["activeCount"]
        assert client.tenant in body["activeInstances"]
        mine = next(i for i in body["instances"] if i["tenantId"] == client.tenant)
        assert mine["uptime"] >= 0 and mine["startedAt"] and mine["lastActivity"]
    status, _, metrics = await gateway_server.request("GET", "/admin/query/metrics", admin)
    assert status == 200
    assert metrics["totalTenants"] == metrics["activeTenants"] + metrics["suspendedTenants"] >= 1
    assert metrics["activeInstances"] >= 1 and metrics["tenants"]["active"] == metrics["activeTenants"]
    parse_iso(metrics["timestamp"])
    status, _, tenants = await gateway_server.request("GET", "/admin/query/tenants", admin)
    assert status == 200 and isinstance(tenants, list)


async def test_health_and_metrics_carry_v1_fields(gateway_server: GatewayProcess,
                                                  unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("vmet"))
    status, _, health = await gateway_server.request("GET", "/health")
    assert status == 200 and health["uptime"] == health["uptime_s"] and parse_iso(health["timestamp"])
    status, _, ready = await gateway_server.request("GET", "/health/ready")
    assert status == 200 and ready["registry"]["loaded"] is True and ready["registry"]["tenantCount"] >= 1
    assert isinstance(ready["runtime"]["activeInstances"], int) and parse_iso(ready["timestamp"])

    status, _, summary = await gateway_server.request("GET", "/metrics", gateway_server.admin_token)
    assert status == 200 and set(summary) == {"timestamp", "uptime", "memory", "tenants", "instances"}
    assert set(summary["memory"]) == {"heapUsed", "heapTotal", "external", "rss"} and summary["memory"]["rss"] > 0
    assert summary["tenants"]["registered"] >= summary["tenants"]["active"] >= 1
    assert set(summary["instances"]) == {"active"}
    # v1 answered this to anyone; now only the global admin sees tenant counts and memory.
    for token, code in ((None, 401), (client.admin, 403), (client.public, 403)):
        status, _, body = await gateway_server.request("GET", "/metrics", token)
        assert status == code and "memory" not in body


async def test_unknown_query_parameters_are_ignored_and_known_ones_still_checked(
        gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("vqry"))
    admin = gateway_server.admin_token
    tenant = client.tenant
    read_routes = [(client.admin, f"/admin/query/{tenant}/{view}") for view in ("mandates", "reviews", "consequences")]
    read_routes += [(admin, "/admin/query/eventlog"), (admin, "/admin/tenants"),
                    (client.admin, f"/admin/tenants/{tenant}/events"),
                    (client.admin, f"/admin/tenants/{tenant}/audit/export"),
                    (client.admin, f"/admin/tenants/{tenant}/audit/replay")]
    for token, path in read_routes:
        status, _, body = await gateway_server.request("GET", f"{path}?color=red&sdkVersion=1.2", token)
        assert status == 200, (path, body)
    status, _, body = await gateway_server.request("GET", "/api/v1/eventos?color=red", client.public)
    assert status == 200, body
    for token, path in [(client.admin, f"/admin/query/{tenant}/mandates?color=red&limit=0"),
                        (client.admin, f"/admin/query/{tenant}/reviews?status=NOPE&x=1"),
                        (client.admin, f"/admin/query/{tenant}/consequences?limit=abc&x=1"),
                        (admin, "/admin/query/eventlog?offset=-1&x=1"),
                        (client.public, "/api/v1/eventos?limit=201&x=1")]:
        status, _, body = await gateway_server.request("GET", path, token)
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), path
