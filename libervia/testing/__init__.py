"""``libervia.testing``: what a plugin author needs to test a plugin the way the built-ins are tested.

* an in-process gateway (:class:`GatewayHarness`): the real host and plugins on a real aiohttp server, built
  from a settings mapping plus extra plugin objects, with a client per role;
* pytest fixtures for it (:mod:`libervia.testing.plugin`, loaded automatically through the ``pytest11`` entry
  point when the gateway is installed);
* the contract suites of every hook family (:mod:`libervia.testing.contracts`): subclass one and provide its
  fixture to prove a third-party implementation keeps the same promises as the built-in one.
"""

import contextlib

with contextlib.suppress(ImportError):   # the harness alone also works without pytest
    import pytest

    # The contract suites are test code imported from an installed package: let pytest rewrite their asserts.
    pytest.register_assert_rewrite("libervia.testing.contracts")

from libervia.testing.gateway import (
    ADMIN_TOKEN,
    GatewayHarness,
    RoleClient,
    TenantAccess,
    build_plugins,
    build_settings,
)

__all__ = ["ADMIN_TOKEN", "GatewayHarness", "RoleClient", "TenantAccess", "build_plugins", "build_settings"]
