"""What the hook-family contracts share: an in-process gateway running the implementation under test.

A contract class asks for two fixtures, both with defaults: ``contract_settings`` (a settings mapping, ``{}``) and
``contract_plugins`` (the plugin objects to register, ``[]``: the built-ins are always there). Override them in
your subclass to put your implementation in the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from libervia.testing.gateway import GatewayHarness


class GatewayContract:
    pytestmark = pytest.mark.asyncio

    @pytest.fixture
    def contract_settings(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    def contract_plugins(self) -> Sequence[object]:
        return []

    @pytest_asyncio.fixture
    async def contract_gateway(self, tmp_path: Path, contract_settings: Mapping[str, Any],
                               contract_plugins: Sequence[object]) -> AsyncIterator[GatewayHarness]:
        async with GatewayHarness(tmp_path / "contract-data", contract_settings, contract_plugins) as harness:
            yield harness
