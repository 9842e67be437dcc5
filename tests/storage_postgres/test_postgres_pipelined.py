"""Pipelined commits on the PostgreSQL store: concurrent decisions of one tenant share transactions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.test_pipelined_commits import decisions_sharing_writes
from tests.gateway_process import GatewayProcess
from tests.storage_postgres.conftest import postgres_env, stored_lines


@pytest.mark.postgres
async def test_postgres_one_transaction_serves_many_pipelined_decisions(
        gateway_factory: Any, postgres_dsn: str, pg_schema: str) -> None:
    gateway: GatewayProcess = gateway_factory(postgres_env(postgres_dsn, pg_schema))
    tenant = "pipelined-pg"
    _, results = await decisions_sharing_writes(gateway, tenant)
    lines = await stored_lines(postgres_dsn, pg_schema, tenant)
    assert all(body["episodio_id"] in lines for body in results)
    status, _, verdict = await gateway.request("GET", f"/admin/tenants/{tenant}/audit/verify", gateway.admin_token)
    assert status == 200 and verdict["valid"] is True, verdict
