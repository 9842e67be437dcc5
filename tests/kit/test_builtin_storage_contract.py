"""Both built-in storage plugins pass the kit's gateway-level storage contract (PostgreSQL on the real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from libervia.testing.contracts.storage import StorageGatewayContract
from tests.conftest import postgres_test_dsn
from tests.storage_postgres.conftest import drop_schema


class TestFileStorage(StorageGatewayContract):
    pass


@pytest.mark.postgres
class TestPostgresStorage(StorageGatewayContract):
    @pytest.fixture
    async def schema(self) -> AsyncIterator[str]:
        import secrets

        name = f"test_kit_{secrets.token_hex(6)}"
        yield name
        await drop_schema(postgres_test_dsn(), name)

    @pytest.fixture
    def contract_settings(self, schema: str) -> dict[str, Any]:
        return {"storage": "storage_postgres",
                "plugin": {"storage_postgres": {"dsn": postgres_test_dsn(), "schema": schema}}}
