"""The contract of a telemetry plugin (the ``telemetry`` slot: ``libervia_observe_requests``,
``libervia_count_event``, ``libervia_render_metrics``).

Subclass :class:`TelemetryContract` and override ``contract_settings`` (``{"telemetry": "<your plugin>"}``, with
``plugins.block`` naming the built-in if it would also be loaded) and ``contract_plugins`` (your plugin). Requests
go through the real pipeline of an in-process gateway; the metrics are read back through your renderer.

What it checks:

* the observation and counting hooks are synchronous (the host calls them on the event loop, once per turn);
* after requests, ``fmt="prometheus"`` renders ``(content_type, body)`` with a text content type and a non-empty
  body that names the requests' tenant, and ``fmt="json"`` renders a JSON document;
* ``tenant_id`` restricts the output: another tenant's id does not appear in it;
* an unknown format answers None (not mine) or raises nothing worse than ``ValueError``.
"""

from __future__ import annotations

import inspect
import json

import pytest

from libervia.hookcalls import call_first
from libervia.telemetry import AUTH_FAILURE
from libervia.testing.contracts.harness import GatewayContract
from libervia.testing.gateway import GatewayHarness

SYNC_HOOKS = ("libervia_observe_requests", "libervia_count_event")


async def render(harness: GatewayHarness, fmt: str, tenant_id: str | None = None) -> tuple[str, bytes] | None:
    gateway = harness.gateway
    rendered = await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt=fmt,
                                tenant_id=tenant_id)
    return rendered


class TelemetryContract(GatewayContract):
    async def test_observing_and_counting_are_synchronous(self, contract_gateway: GatewayHarness) -> None:
        slot = contract_gateway.settings.get("telemetry")
        for hook in SYNC_HOOKS:
            for impl in getattr(contract_gateway.gateway.pm.hook, hook).get_hookimpls():
                if impl.plugin_name == slot:
                    assert not inspect.iscoroutinefunction(impl.function), hook
        contract_gateway.gateway.count(AUTH_FAILURE, reason="contract", tenant_id="unknown")  # must not raise

    async def test_renders_what_the_requests_did(self, contract_gateway: GatewayHarness) -> None:
        tenant = await contract_gateway.create_tenant()
        for _ in range(3):
            assert (await tenant.public.get("/api/v1/eventos")).status == 200
        assert (await contract_gateway.as_role("not-a-valid-token-at-all").get("/api/v1/eventos")).status == 401
        rendered = await render(contract_gateway, "prometheus")
        assert rendered is not None
        content_type, body = rendered
        assert isinstance(content_type, str) and content_type.startswith("text/")
        assert isinstance(body, bytes) and tenant.tenant_id.encode() in body
        as_json = await render(contract_gateway, "json")
        assert as_json is not None and "json" in as_json[0]
        json.loads(as_json[1])

    async def test_a_tenant_sees_only_its_own_series(self, contract_gateway: GatewayHarness) -> None:
        first, second = await contract_gateway.create_tenant(), await contract_gateway.create_tenant()
        for tenant in (first, second):
            assert (await tenant.public.get("/api/v1/eventos")).status == 200
        rendered = await render(contract_gateway, "prometheus", first.tenant_id)
        assert rendered is not None
        assert first.tenant_id.encode() in rendered[1] and second.tenant_id.encode() not in rendered[1]

    async def test_an_unknown_format_is_not_rendered(self, contract_gateway: GatewayHarness) -> None:
        try:
            rendered = await render(contract_gateway, "no-such-format")
        except ValueError:
            return
        assert rendered is None, f"an unknown format was rendered: {rendered!r}"

    @pytest.fixture
    def contract_settings(self) -> dict[str, str]:
        return {"telemetry": "telemetry_prometheus"}
