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


def postgres_env(dsn: str, schema: str) -> dict[str, str]:
    """The settings (environment) of a gateway or an operator command on ``schema``."""
    return {"LIBERVIA_STORAGE": "storage_postgres", "LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN": dsn,
            "LIBERVIA_PLUGIN__STORAGE_POSTGRES__SCHEMA": schema}


async def fetch_rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def stored_lines(dsn: str, schema: str, tenant: str) -> str:
    """Every stored line of a tenant's log, joined: what a test searches for acknowledged writes."""
    rows = await fetch_rows(dsn, f"SELECT line FROM {quote_ident(schema)}.events WHERE tenant = $1", tenant)
    return "\n".join(row["line"] for row in rows)
