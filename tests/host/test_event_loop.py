"""uvloop is the default event loop of ``libervia serve``; the ``event_loop`` setting turns it off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.gateway_process import GatewayProcess


@pytest.mark.parametrize("env, expected", [({}, "uvloop"), ({"LIBERVIA_EVENT_LOOP": "asyncio"}, "asyncio")])
async def test_the_gateway_runs_on_the_chosen_loop(gateway_factory: Callable[..., GatewayProcess],
                                                   env: dict[str, str], expected: str) -> None:
    gateway = gateway_factory(env)
    status, _, body = await gateway.request("GET", "/health")
    assert status == 200 and body["status"] == "ok"
    await gateway.create_tenant("loop")
    token = await gateway.create_key("loop", "public")
    assert (await gateway.request("GET", "/api/v1/eventlog/status", token))[0] == 200
    assert gateway.stop() == 0
    messages = [line.get("msg", "") for line in gateway.log_lines()]
    assert f"event loop: {expected}" in messages, messages[:5]


async def test_an_unknown_loop_is_refused_naming_the_setting(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory({"LIBERVIA_EVENT_LOOP": "tokio"}, run=False)
    with pytest.raises(RuntimeError, match="event_loop"):
        gateway.start()
