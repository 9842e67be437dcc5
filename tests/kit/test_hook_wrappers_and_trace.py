"""pluggy wrappers on the hooks the host runs itself (first-result and awaitable ones), and the hook trace."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest
from loguru import logger

from libervia import hookimpl
from libervia.context import Principal
from libervia.routing import Role
from libervia.testing import GatewayHarness


class NewStyleWrapper:
    PLUGIN_NAME = "new_style_wrapper"

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.order: list[str] = []
        self.refuse = False  # when set, the wrapper drops whatever principal the implementations found

    @hookimpl(wrapper=True)
    def libervia_authenticate(self, token: str) -> Generator[None, Any, Principal | None]:
        self.order.append("before")
        principal = yield
        self.order.append("after")
        self.seen.append(principal)
        return None if self.refuse else principal


class OldStyleWrapper:
    PLUGIN_NAME = "old_style_wrapper"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(hookwrapper=True)
    def libervia_authenticate(self) -> Generator[None, Any, None]:
        outcome = yield
        self.seen.append(outcome.get_result())


class AsyncNotMine:
    """An async implementation asked first that answers None: the next one must still be asked."""

    PLUGIN_NAME = "async_not_mine"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    async def libervia_authenticate(self) -> None:
        self.calls += 1
        return None


async def test_new_style_wrapper_sees_the_awaited_principal_and_can_replace_it(tmp_path: Any) -> None:
    wrapper, first = NewStyleWrapper(), AsyncNotMine()
    async with GatewayHarness(tmp_path / "data", plugins=[wrapper, first]) as gateway:
        ok = await gateway.admin.get("/admin/tenants")
        assert ok.status == 200
        assert len(wrapper.seen) == 1 and isinstance(wrapper.seen[0], Principal)
        assert wrapper.seen[0].role is Role.GLOBAL_ADMIN
        assert wrapper.order == ["before", "after"] and first.calls == 1
        # What the wrapper returns is the result: the valid admin token is refused when the wrapper says so.
        wrapper.refuse = True
        refused = await gateway.admin.get("/admin/tenants")
        assert refused.status == 401 and (await refused.json())["code"] == "INVALID_TOKEN"
        assert isinstance(wrapper.seen[-1], Principal)


async def test_old_style_hookwrapper_sees_the_awaited_principal(tmp_path: Any) -> None:
    wrapper = OldStyleWrapper()
    async with GatewayHarness(tmp_path / "data", plugins=[wrapper]) as gateway:
        tenant = await gateway.create_tenant()
        response = await tenant.public.get("/api/v1/eventos")
        assert response.status == 200
        principal = wrapper.seen[-1]
        assert isinstance(principal, Principal) and principal.tenant_id == tenant.tenant_id


async def test_a_wrapper_sees_the_exception_of_a_rejecting_implementation(tmp_path: Any) -> None:
    seen: list[str] = []

    class Watch:
        PLUGIN_NAME = "watch"

        @hookimpl(wrapper=True)
        def libervia_authenticate(self) -> Generator[None, Any, Any]:
            try:
                return (yield)
            except Exception as exc:
                seen.append(type(exc).__name__)
                raise

    async with GatewayHarness(tmp_path / "data", plugins=[Watch()]) as gateway:
        tenant = await gateway.create_tenant()
        key_id = (await (await gateway.admin.get(f"/admin/tenants/{tenant.tenant_id}/keys")).json())["keys"]
        public = next(k["keyId"] for k in key_id if k["role"] == "public")
        revoked = await gateway.admin.post(f"/admin/tenants/{tenant.tenant_id}/keys/{public}/revoke")
        assert revoked.status == 200
        response = await tenant.public.get("/api/v1/eventos")
        assert response.status == 401
        assert seen == ["AuthError"]


@pytest.fixture
def trace_lines(monkeypatch: pytest.MonkeyPatch) -> Generator[list[dict[str, Any]], None, None]:
    monkeypatch.setenv("LIBERVIA_TRACE_PLUGINS", "1")
    lines: list[dict[str, Any]] = []
    sink = logger.add(lambda message: lines.append(dict(message.record["extra"])),
                      filter=lambda record: "hook" in record["extra"])
    yield lines
    logger.remove(sink)


async def test_trace_names_every_hook_call_with_implementations_result_and_time(
        tmp_path: Any, trace_lines: list[dict[str, Any]]) -> None:
    first = AsyncNotMine()
    async with GatewayHarness(tmp_path / "data", plugins=[first]) as gateway:
        response = await gateway.admin.get("/admin/tenants")
        assert response.status == 200
    auth = [line for line in trace_lines if line["hook"] == "libervia_authenticate"]
    assert len(auth) == 1
    line = auth[0]
    # call order: the tryfirst plugin, then the built-ins last registered first, up to the one that answered
    assert line["implementations"][0] == "async_not_mine:libervia_authenticate"
    assert line["implementations"][-1] == "auth_admin_token:libervia_authenticate"
    assert line["result"] == "Principal" and line["durationMs"] >= 0
    assert line["args"]["token"] == "***" and gateway.settings.admin_token not in json.dumps(trace_lines)
    hooks = {line["hook"] for line in trace_lines}
    # first-result hooks run by the host, hooks pluggy calls itself, and hooks called for every plugin
    assert {"libervia_storage", "libervia_rate_limiter", "libervia_routes", "libervia_startup",
            "libervia_observe_requests", "libervia_shutdown"} <= hooks
    routes = next(line for line in trace_lines if line["hook"] == "libervia_routes")
    assert routes["result"].startswith("list[")


async def test_no_trace_without_the_variable(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBERVIA_TRACE_PLUGINS", raising=False)
    lines: list[Any] = []
    sink = logger.add(lines.append, filter=lambda record: "hook" in record["extra"])
    try:
        async with GatewayHarness(tmp_path / "data") as gateway:
            assert (await gateway.admin.get("/admin/tenants")).status == 200
    finally:
        logger.remove(sink)
    assert lines == []


async def test_libervia_serve_writes_the_trace_as_json_lines_without_secrets(gateway_factory: Any) -> None:
    gateway = gateway_factory({"LIBERVIA_TRACE_PLUGINS": "1"})
    status, _, _ = await gateway.request("GET", "/admin/tenants", gateway.admin_token)
    assert status == 200
    status, _, _ = await gateway.request("GET", "/admin/tenants", "wrong-token-value-0123456789")
    assert status == 401
    gateway.stop()
    lines = gateway.log_lines()   # every stdout line parses as one JSON object
    auth = [line for line in lines if line.get("hook") == "libervia_authenticate"]
    assert [line["result"] for line in auth] == ["Principal", "none"]
    assert all(line["args"]["token"] in ("***", "[REDACTED]") for line in auth)
    text = gateway.log_text()
    assert gateway.admin_token not in text and "wrong-token-value-0123456789" not in text
