"""A tenant whose log holds an entry the Core cannot apply: a clear 503, and the others are unaffected."""

from __future__ import annotations

from typing import Any

from libervia.eventlog.checkpoints import CheckpointSigner, derive_checkpoint_key
from libervia.storage import EventDraft
from libervia_plugins.storage_files.eventlog import FileEventStore
from tests.gateway_process import PEPPER, GatewayProcess


async def test_unappliable_entry_is_reported_not_crashed(gateway_server: GatewayProcess, unique_id: Any) -> None:
    broken, healthy = unique_id("broken"), unique_id("healthy")
    await gateway_server.create_tenant(broken)
    await gateway_server.create_tenant(healthy)
    token = await gateway_server.create_key(broken, "public")
    # Another tool writes a well-chained entry whose payload is not what the Core's event expects.
    store = FileEventStore(gateway_server.base_dir, CheckpointSigner(derive_checkpoint_key(PEPPER)))
    log = await store.open_log(broken)
    await log.append([EventDraft("CONSEQUENCIA_REGISTRADA", "ObservacaoDeConsequencia", "obs_x", {"n": 1})])
    await store.close()

    status, _, body = await gateway_server.request("GET", "/api/v1/eventos", token)
    assert (status, body["code"]) == (503, "STORAGE_CORRUPT")
    status, _, listed = await gateway_server.request("GET", "/admin/query/tenants", gateway_server.admin_token)
    assert status == 200
    rows = {row["id"]: row for row in listed}
    assert rows[broken]["mandates"] is None
    assert rows[healthy]["mandates"] == {"active": 0, "suspended": 0}
    status, _, verdict = await gateway_server.request("GET", f"/admin/tenants/{broken}/audit/verify",
                                                      gateway_server.admin_token)
    assert status == 200 and verdict["valid"] is True  # the chain is fine; only its meaning is not
