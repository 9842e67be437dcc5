"""The file registry store passes the registry contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from libervia.testing.contracts.registry import MakeRegistry, RegistryStoreContract
from libervia_plugins.storage_files.registry import FileRegistryStore


@pytest.fixture
def make_registry(tmp_path: Path) -> MakeRegistry:
    async def make() -> FileRegistryStore:
        store = FileRegistryStore(tmp_path)
        store.prepare()
        return store

    return make


class TestFileRegistryStore(RegistryStoreContract):
    pass
