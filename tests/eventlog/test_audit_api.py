"""The audit routes of API.md §7 against a real gateway process whose tenant log this test process also writes.

Appending from the test process through a second ``FileEventStore`` on the gateway's ``BASE_DIR`` is exactly the
"several gateway processes, one BASE_DIR" deployment, so the gateway must see those events under its own lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from libervia.eventlog.checkpoints import CheckpointSigner, derive_checkpoint_key
from libervia.storage import EventDraft
from libervia_plugins.storage_files.eventlog import FileEventStore, FileTenantEventLog
from tests.gateway_process import PEPPER, GatewayProcess

# The gateway under test has no explicit checkpoint key, so it derives one from the pepper; so do we.
GATEWAY_SIGNER = CheckpointSigner(derive_checkpoint_key(PEPPER))


@pytest.fixture
async def tenant(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> str:
    tenant_id = unique_id("audit")
    status, _, body = await gateway_server.request("POST", "/admin/tenants", gateway_server.admin_token,
                                                   json={"id": tenant_id, "name": "Audit test"})
    assert status == 201, body
    return tenant_id


@pytest.fixture
async def writer(gateway_server: GatewayProcess, tenant: str) -> AsyncIterator[FileTenantEventLog]:
    store = FileEventStore(gateway_server.base_dir, GATEWAY_SIGNER, checkpoint_every=10)
    yield await store.open_log(tenant)
    await store.close()


async def get(gateway: GatewayProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = await gateway.request("GET", path, gateway.admin_token, headers=headers)
    return status, body


async def write_events(log: FileTenantEventLog) -> list[dict[str, Any]]:
    stored = []
    for n in range(30):
        evento, actor = ("MANDATO_CONCEDIDO", "key_alpha") if n % 3 else ("CONSEQUENCIA_REGISTRADA", None)
        stored += await log.append([EventDraft(evento, "Mandato", f"man_{n % 4}", {"n": n}, actor=actor)])
    return stored


async def test_verify_and_checkpoints_see_another_process_appends(gateway_server: GatewayProcess, tenant: str,
                                                                  writer: FileTenantEventLog) -> None:
    stored = await write_events(writer)
    base = f"/admin/tenants/{tenant}"
    status, full = await get(gateway_server, f"{base}/audit/verify")
    assert status == 200
    assert full["valid"] is True and full["totalVerified"] == 30 and full["headHash"] == stored[-1]["hash"]
    assert full["checkpoint"]["seq"] == 30
    status, fast = await get(gateway_server, f"{base}/audit/verify-fast")
    assert status == 200 and fast["valid"] is True and fast["fromSeq"] == 30
    status, listed = await get(gateway_server, f"{base}/audit/checkpoints")
    assert status == 200
    assert [(cp["seq"], cp["signatureValid"]) for cp in listed["checkpoints"]] == [(10, True), (20, True),
                                                                                  (30, True)]
    assert listed["checkpoints"][1]["hash"] == stored[19]["hash"]


async def test_events_are_paginated(gateway_server: GatewayProcess, tenant: str,
                                    writer: FileTenantEventLog) -> None:
    stored = await write_events(writer)
    base = f"/admin/tenants/{tenant}/events"
    status, page = await get(gateway_server, f"{base}?limit=5&offset=10")
    assert status == 200
    assert page == {"events": [{**entry, "timestamp": entry["ts"]} for entry in stored[10:15]], "count": 5,
                    "total": 30}
    status, page = await get(gateway_server, base)
    assert status == 200 and page["count"] == 30 and page["total"] == 30
    status, page = await get(gateway_server, f"{base}?offset=40")
    assert status == 200 and page == {"events": [], "count": 0, "total": 30}
    for bad in ("limit=0", "limit=201", "offset=-1", "limit=abc"):
        status, body = await get(gateway_server, f"{base}?{bad}")
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), bad


async def test_export_by_seq_and_time_as_json(gateway_server: GatewayProcess, tenant: str,
                                              writer: FileTenantEventLog) -> None:
    stored = await write_events(writer)
    base = f"/admin/tenants/{tenant}/audit/export"
    status, body = await get(gateway_server, f"{base}?fromSeq=5&toSeq=9")
    assert status == 200
    assert body["entries"] == [{**entry, "timestamp": entry["ts"]} for entry in stored[4:9]]
    assert body["manifest"] == {"count": 5, "firstSeq": 5, "lastSeq": 9, "firstHash": stored[4]["hash"],
                                "lastHash": stored[8]["hash"], "chainValidWithinExport": True}
    status, body = await get(gateway_server, f"{base}?fromTs=2999-01-01T00:00:00Z")
    assert status == 200 and body["entries"] == [] and body["manifest"]["count"] == 0
    status, body = await get(gateway_server, f"{base}?fromTs={stored[0]['ts']}&toTs=2999-01-01T00:00:00.000Z")
    assert status == 200 and body["manifest"]["count"] == 30
    for bad in ("fromSeq=9&toSeq=5", "fromSeq=0", "fromTs=yesterday", "toTs=2026-02-30T00:00:00Z"):
        status, body = await get(gateway_server, f"{base}?{bad}")
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), bad


async def test_export_streams_ndjson_byte_for_byte(gateway_server: GatewayProcess, tenant: str,
                                                   writer: FileTenantEventLog) -> None:
    for start in range(0, 5000, 500):
        await writer.append([EventDraft("BULK", "Thing", str(n), {"n": n, "text": "ção"})
                             for n in range(start, start + 500)])
    status, headers, body = await gateway_server.request(
        "GET", f"/admin/tenants/{tenant}/audit/export", gateway_server.admin_token,
        headers={"Accept": "application/x-ndjson"})
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["X-Request-Id"] and headers["Cache-Control"] == "no-store"
    lines = body.encode().split(b"\n")
    assert lines[-1] == b""
    on_disk = writer.paths.events.read_bytes().split(b"\n")[:-1]
    assert lines[:-2] == on_disk  # every entry exactly as stored, no cap
    manifest = orjson.loads(lines[-2])["manifest"]
    assert manifest["count"] == 5000 and manifest["chainValidWithinExport"] is True


async def test_replay_aggregates_with_filters(gateway_server: GatewayProcess, tenant: str,
                                              writer: FileTenantEventLog) -> None:
    stored = await write_events(writer)
    base = f"/admin/tenants/{tenant}/audit/replay"
    status, body = await get(gateway_server, base)
    assert status == 200
    assert body == {
        "totalEventos": 30,
        "porEvento": {"CONSEQUENCIA_REGISTRADA": 10, "MANDATO_CONCEDIDO": 20},
        "porEntidade": {"Mandato": 30},
        "porAtor": {"unknown": 10, "key_alpha": 20},
        "range": {"fromSeq": 1, "toSeq": 30, "fromTs": stored[0]["ts"], "toTs": stored[-1]["ts"]},
        "inconsistencias": [],
    }
    status, body = await get(gateway_server, f"{base}?evento=CONSEQUENCIA_REGISTRADA&entidadeId=man_0")
    assert status == 200
    assert body["totalEventos"] == len([e for e in stored if e["evento"] == "CONSEQUENCIA_REGISTRADA"
                                        and e["entidade_id"] == "man_0"])
    status, body = await get(gateway_server, f"{base}?entidade=Nada")
    assert status == 200 and body["totalEventos"] == 0 and body["range"]["fromSeq"] is None


async def test_tampering_shows_in_every_audit_view(gateway_server: GatewayProcess, tenant: str,
                                                   writer: FileTenantEventLog) -> None:
    stored = await write_events(writer)
    path = writer.paths.events
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"n":4', b'"n":7')
    path.write_bytes(b"\n".join(lines))
    base = f"/admin/tenants/{tenant}"
    status, full = await get(gateway_server, f"{base}/audit/verify")
    assert status == 200
    assert (full["valid"], full["firstInvalidIndex"], full["firstInvalidId"]) == (False, 5, stored[4]["id"])
    assert "hash mismatch" in full["reason"]
    status, body = await get(gateway_server, f"{base}/audit/replay")
    assert [(i["seq"], i["id"]) for i in body["inconsistencias"]] == [(5, stored[4]["id"])]
    status, body = await get(gateway_server, f"{base}/audit/export?fromSeq=3&toSeq=7")
    assert body["manifest"]["chainValidWithinExport"] is False


async def test_an_unknown_tenant_is_404(gateway_server: GatewayProcess) -> None:
    for path in ("audit/verify", "audit/verify-fast", "audit/export", "audit/replay", "audit/checkpoints"):
        status, body = await get(gateway_server, f"/admin/tenants/no-such-tenant/{path}")
        assert (status, body["code"]) == (404, "TENANT_NOT_FOUND"), path
