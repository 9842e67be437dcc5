"""The pytest plugin of ``libervia.testing`` (registered through the ``pytest11`` entry point ``libervia``).

Fixtures (override the first three in your own ``conftest.py`` or test module):

* ``libervia_settings``: the settings mapping (``{}``): nested tables as dicts, ``{"plugin": {"hello": {...}}}``;
* ``libervia_plugins``: plugin objects (modules) registered after everything else, so they are asked first;
* ``libervia_base_dir``: a fresh, empty ``BASE_DIR`` for each test;
* ``libervia_gateway``: a started :class:`~libervia.testing.GatewayHarness` built from the three above;
* ``libervia_admin``: a :class:`~libervia.testing.RoleClient` with the global admin token;
* ``libervia_tenant``: a new tenant with a ``tenant_admin`` and a ``public`` client
  (:class:`~libervia.testing.TenantAccess`);
* ``libervia_anonymous``: a client without credentials;
* ``make_libervia_gateway``: a factory ``await make(settings, plugins=[...], base_dir=None)`` for tests that
  need several gateways or settings chosen in the test; everything it started is stopped afterwards.

The fixtures are declared with ``pytest_asyncio.fixture``, so they work in pytest-asyncio's strict and auto
modes alike (and next to pytest-aiohttp).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from libervia.testing.gateway import GatewayHarness, RoleClient, TenantAccess

MakeGateway = Callable[..., Awaitable[GatewayHarness]]


@pytest.fixture
def libervia_settings() -> Mapping[str, Any]:
    return {}


@pytest.fixture
def libervia_plugins() -> Sequence[object]:
    return []


@pytest.fixture
def libervia_base_dir(tmp_path: Path) -> Path:
    return tmp_path / "libervia-data"


@pytest_asyncio.fixture
async def make_libervia_gateway(tmp_path: Path) -> AsyncIterator[MakeGateway]:
    started: list[GatewayHarness] = []

    async def make(settings: Mapping[str, Any] | None = None, plugins: Sequence[object] = (),
                   base_dir: Path | None = None) -> GatewayHarness:
        harness = GatewayHarness(base_dir or tmp_path / f"libervia-data-{len(started)}", settings, plugins)
        await harness.start()
        started.append(harness)
        return harness

    yield make
    for harness in reversed(started):
        await harness.stop()


@pytest_asyncio.fixture
async def libervia_gateway(libervia_base_dir: Path, libervia_settings: Mapping[str, Any],
                           libervia_plugins: Sequence[object]) -> AsyncIterator[GatewayHarness]:
    async with GatewayHarness(libervia_base_dir, libervia_settings, libervia_plugins) as harness:
        yield harness


@pytest.fixture
def libervia_admin(libervia_gateway: GatewayHarness) -> RoleClient:
    return libervia_gateway.admin


@pytest.fixture
def libervia_anonymous(libervia_gateway: GatewayHarness) -> RoleClient:
    return libervia_gateway.anonymous


@pytest_asyncio.fixture
async def libervia_tenant(libervia_gateway: GatewayHarness) -> TenantAccess:
    return await libervia_gateway.create_tenant()
