"""10.2: after a purge nothing of the old tenant is reachable, and the re-created id starts at genesis (on the old
code the new tenant served the previous owner's events, head hash and files)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from typing import Any

from tests.core.bodies import decisao
from tests.gateway_process import GatewayProcess


async def _purge_then_recreate(gateway: GatewayProcess) -> None:
    """The scenario of the issue, against either store; asserts what any store must guarantee."""
    admin = gateway.admin_token
    await gateway.create_tenant("tdel")
    old_key = await gateway.create_key("tdel", "tenant_admin")
    status, _, old_decision = await gateway.request("POST", "/api/v1/decisoes", old_key, json=decisao())
    assert status == 201, old_decision
    # Stopping the instance flushes its records to the tenant's record index, which the purge must take too.
    status, _, _ = await gateway.request("POST", "/admin/tenants/tdel/shutdown", admin)
    assert status == 200
    status, _, _ = await gateway.request("POST", "/admin/tenants/tdel/suspend", admin, json={"reason": "r"})
    assert status == 200
    status, _, old_events = await gateway.request("GET", "/admin/tenants/tdel/events", admin)
    assert old_events["total"] >= 2
    _, _, old_verify = await gateway.request("GET", "/admin/tenants/tdel/audit/verify", admin)
    assert old_verify["headHash"]
    status, _, _ = await gateway.request("DELETE", "/admin/tenants/tdel", admin)
    assert status == 200
    status, _, body = await gateway.request("POST", "/admin/tenants/tdel/purge", admin)
    assert status == 200, body
    await gateway.create_tenant("tdel")
    status, _, events = await gateway.request("GET", "/admin/tenants/tdel/events", admin)
    assert (status, events["total"], events["events"]) == (200, 0, [])
    _, _, verify = await gateway.request("GET", "/admin/tenants/tdel/audit/verify", admin)
    assert verify["valid"] is True and verify["totalVerified"] == 0 and verify["headHash"] != old_verify["headHash"]
    _, _, checkpoints = await gateway.request("GET", "/admin/tenants/tdel/audit/checkpoints", admin)
    assert not [c for c in (checkpoints if isinstance(checkpoints, list) else checkpoints.get("checkpoints", []))
                if c.get("hash") == old_verify["headHash"]]
    public = await gateway.create_key("tdel", "public")
    status, _, eventos = await gateway.request("GET", "/api/v1/eventos", public)
    assert status == 200
    assert all(e["evento"] != "TENANT_SUSPENDED" for e in eventos["eventos"]), eventos
    status, _, body = await gateway.request("GET", f"/api/v1/episodios/{old_decision['episodio_id']}", public)
    assert (status, body["code"]) == (404, "EPISODE_NOT_FOUND")
    # the old owner's key is gone with it
    status, _, body = await gateway.request("GET", "/admin/tenants/tdel", old_key)
    assert (status, body["code"]) == (401, "INVALID_TOKEN")
    # metric series of the old tenant went too: the new one's counters start from its own events only
    _, _, metrics = await gateway.request("GET", "/internal/tenants/tdel/metrics/json", admin)
    appends = [v["value"] for m in metrics["metrics"] if m["name"] == "libervia_eventlog_appends_total"
               for v in m["values"] if v["labels"].get("tenant_id") == "tdel"]
    assert sum(appends) <= 2, appends  # KEY_CREATED of the new public key (and nothing of the old tenant)
    assert gateway.stop() == 0
    purge_lines = [line for line in gateway.log_lines() if line.get("code") == "TENANT_PURGED"]
    assert len(purge_lines) == 1 and purge_lines[0]["actor"] == "global_admin" and purge_lines[0]["purgedAt"]


async def test_purged_id_starts_at_genesis_with_the_file_store(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await _purge_then_recreate(gateway)
    # the old files left every path the gateway reads, for the purge area that `libervia check` lists
    purged = list((gateway.base_dir / "purged").iterdir())
    assert len(purged) == 1 and purged[0].name.startswith("tdel-") and (purged[0] / "tenant").is_dir()
    check = subprocess.run([sys.executable, "-m", "libervia", "check"], env=gateway.env, capture_output=True,
                           text=True, timeout=60, cwd=gateway.base_dir.parent)
    assert f"purge area {gateway.base_dir / 'purged'}: 1 purged tenant(s)" in check.stdout, check.stdout


async def test_purged_id_starts_at_genesis_with_postgresql(gateway_factory: Any, postgres_dsn: str) -> None:
    from tests.storage_postgres.conftest import drop_schema

    schema = f"test_{secrets.token_hex(6)}"
    try:
        gateway: GatewayProcess = gateway_factory({"LIBERVIA_STORAGE": "storage_postgres",
                                                   "LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN": postgres_dsn,
                                                   "LIBERVIA_PLUGIN__STORAGE_POSTGRES__SCHEMA": schema})
        await _purge_then_recreate(gateway)
    finally:
        await drop_schema(postgres_dsn, schema)


async def test_a_purge_through_one_process_leaves_nothing_of_the_old_tenant_in_another(
        gateway_factory: Any, tmp_path: Any) -> None:
    """Two processes on one BASE_DIR (as workers are): the one that did not run the purge has the old tenant's
    Core open. It must drop it writing nothing, so the re-created id shows genesis there too and the new tenant's
    checkpoints never hold a checkpoint of the old chain (on the old code it served the old events, and wrote the
    old head's checkpoint into the new tenant's file when it closed)."""
    shared = tmp_path / "shared"
    purger, other = gateway_factory(base_dir=shared), gateway_factory(base_dir=shared)
    admin = purger.admin_token
    await purger.create_tenant("tdel")
    public = await purger.create_key("tdel", "public")
    for _ in range(3):  # the other process opens the tenant's Core and log
        status, _, body = await other.request("GET", "/api/v1/eventos", public)
        assert status == 200, body
    _, _, old_events = await other.request("GET", "/admin/tenants/tdel/events", admin)
    assert old_events["total"] >= 1
    _, _, old_verify = await other.request("GET", "/admin/tenants/tdel/audit/verify", admin)
    for method, path in (("DELETE", "/admin/tenants/tdel"), ("POST", "/admin/tenants/tdel/purge")):
        status, _, body = await purger.request(method, path, admin)
        assert status == 200, body
    await purger.create_tenant("tdel")
    # the other process may see the change only after its registry poll: wait for the new tenant there
    for _ in range(200):
        _, _, tenant = await other.request("GET", "/admin/tenants/tdel", admin)
        if tenant.get("status") == "active" and tenant.get("keys", {}).get("active") == 0:
            break
    # The other process learns of the purge with its registry copy (polled every registry_refresh_s): within a
    # bounded time it shows genesis, never the old tenant's events.
    deadline = asyncio.get_running_loop().time() + 3
    while True:
        status, _, events = await other.request("GET", "/admin/tenants/tdel/events", admin)
        if (status, events.get("total")) == (200, 0) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (status, events["total"]) == (200, 0), events
    _, _, verify = await other.request("GET", "/admin/tenants/tdel/audit/verify", admin)
    assert verify["valid"] is True and verify["headHash"] != old_verify["headHash"], verify
    status, _, body = await other.request("GET", "/api/v1/eventos", public)
    assert (status, body["code"]) == (401, "INVALID_TOKEN")
    # closing both writes only checkpoints of the new chain into the new tenant's file
    assert other.stop() == 0 and purger.stop() == 0
    checkpoints = (shared / "checkpoints" / "tdel.jsonl")
    lines = checkpoints.read_text().splitlines() if checkpoints.exists() else []
    assert all(old_verify["headHash"] not in line for line in lines), lines
    restarted = gateway_factory(base_dir=shared)
    _, _, verify = await restarted.request("GET", "/admin/tenants/tdel/audit/verify", admin)
    assert verify["valid"] is True, verify
