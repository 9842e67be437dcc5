"""Fixtures of the PostgreSQL storage suites: a schema of the test's own, dropped with everything in it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from libervia_plugins.storage_postgres.database import quote_ident


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name; the stores create it on start, and it is dropped after the test."""
    name = f"test_{secrets.token_hex(6)}"
    yield name
    await drop_schema(postgres_dsn, name)
