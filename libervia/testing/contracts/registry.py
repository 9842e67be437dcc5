"""The contract every :class:`libervia.storage.RegistryStore` must keep (the file store, PostgreSQL, others).

Subclass :class:`RegistryStoreContract` in a ``test_*.py`` module and provide the fixture ``make_registry``: an
async callable returning a *new* store over the *same* backing data each time it is called (the way a second
gateway process sees it), prepared and ready; the fixture cleans up after the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from libervia.storage import RegistryStore

MakeRegistry = Callable[[], Awaitable[RegistryStore]]


def add_tenant(tenant_id: str) -> Callable[[dict[str, Any]], str]:
    def mutate(doc: dict[str, Any]) -> str:
        doc["tenants"][tenant_id] = {"id": tenant_id, "status": "active", "keys": []}
        return tenant_id

    return mutate


class RegistryStoreContract:
    pytestmark = pytest.mark.asyncio

    async def test_starts_empty(self, make_registry: MakeRegistry) -> None:
        store = await make_registry()
        _, doc = await store.read()
        assert doc["tenants"] == {}

    async def test_update_is_read_back_by_another_store(self, make_registry: MakeRegistry) -> None:
        first, second = await make_registry(), await make_registry()
        value, version, doc = await first.update(add_tenant("acme"))
        assert value == "acme" and "acme" in doc["tenants"]
        other_version, other_doc = await second.read()
        assert other_doc["tenants"]["acme"]["status"] == "active"
        assert other_version == version == await second.version()

    async def test_version_changes_with_every_update(self, make_registry: MakeRegistry) -> None:
        store = await make_registry()
        seen = {await store.version()}
        for n in range(3):
            await store.update(add_tenant(f"t-{n}"))
            seen.add(await store.version())
        assert len(seen) == 4

    async def test_failed_mutation_writes_nothing(self, make_registry: MakeRegistry) -> None:
        store = await make_registry()
        await store.update(add_tenant("kept"))
        before = await store.version()

        def broken(doc: dict[str, Any]) -> None:
            doc["tenants"]["lost"] = {"id": "lost"}
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await store.update(broken)
        version, doc = await store.read()
        assert "lost" not in doc["tenants"] and version == before

    async def test_concurrent_updates_from_two_stores_lose_nothing(self, make_registry: MakeRegistry) -> None:
        first, second = await make_registry(), await make_registry()

        def bump(doc: dict[str, Any]) -> int:
            doc["counter"] = doc.get("counter", 0) + 1
            return doc["counter"]

        results = await asyncio.gather(*(store.update(bump) for store in (first, second) for _ in range(15)))
        assert sorted(value for value, _, _ in results) == list(range(1, 31))
        _, doc = await first.read()
        assert doc["counter"] == 30

    async def test_key_usage_merges_and_keeps_the_newest(self, make_registry: MakeRegistry) -> None:
        first, second = await make_registry(), await make_registry()
        await first.record_key_usage({"key_a": "2026-01-01T00:00:00.000Z"})
        await second.record_key_usage({"key_b": "2026-01-02T00:00:00.000Z",
                                       "key_a": "2025-01-01T00:00:00.000Z"})
        usage = await first.key_usage()
        assert usage == {"key_a": "2026-01-01T00:00:00.000Z", "key_b": "2026-01-02T00:00:00.000Z"}
        version_before = await first.version()
        await first.record_key_usage({"key_a": "2026-03-01T00:00:00.000Z"})
        assert await first.version() == version_before  # usage never rewrites the registry
