"""Pipelined commits on the PostgreSQL store: concurrent decisions of one tenant share transactions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.test_pipelined_commits import CONCURRENT, assert_shared_writes, post_decisions, tenant_metrics
from tests.gateway_process import GatewayProcess
from tests.storage_postgres.conftest import postgres_env, stored_lines


@pytest.mark.postgres
async def test_postgres_one_transaction_serves_many_pipelined_decisions(
        gateway_factory: Any, postgres_dsn: str, pg_schema: str) -> None:
    gateway: GatewayProcess = gateway_factory(postgres_env(postgres_dsn, pg_schema))
    tenant = "pipelined-pg"
    await gateway.create_tenant(tenant, quotas={"rateLimitRpm": 0})
    token = await gateway.create_key(tenant, "public")

    results = await post_decisions(gateway, token, CONCURRENT)
    assert [status for status, _ in results] == [201] * CONCURRENT, results[:3]
    metrics = await tenant_metrics(gateway, tenant)
    assert_shared_writes(metrics)
    lines = await stored_lines(postgres_dsn, pg_schema, tenant)
    assert all(body["episodio_id"] in lines for _, body in results)
    status, _, verdict = await gateway.request("GET", f"/admin/tenants/{tenant}/audit/verify", gateway.admin_token)
    assert status == 200 and verdict["valid"] is True, verdict
