"""The shortcuts of the request hot path give the answers of the general code they stand in for."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from libervia import hookimpl
from libervia.clock import parse_iso
from libervia.context import Principal
from libervia.errors import ApiError
from libervia.hookcalls import FirstResultCall, call_first
from libervia.pipeline import tenancy
from libervia.plugin_manager import new_plugin_manager
from libervia.routing import Role
from libervia.storage import RegistryStore
from libervia.tenants.ids import parse_tenant_id
from libervia.tenants.keys import TokenHasher, new_token, token_hash
from libervia.tenants.registry import TenantRegistry
from libervia.testing import GatewayHarness

ADMIN = Principal(Role.TENANT_ADMIN, tenant_id="acme", key_id="key_1")


def principal(name: str) -> Principal:
    return Principal(Role.PUBLIC, tenant_id=name, key_id=f"key_{name}")


class Answers:
    """An implementation answering a fixed value (sync or async), counting its calls."""

    def __init__(self, name: str, answer: Any, *, is_async: bool = False, order: str = "") -> None:
        self.PLUGIN_NAME = name
        self.answer = answer
        self.calls = 0

        async def answer_later(token: str) -> Any:
            self.calls += 1
            return self.answer

        def answer_now(token: str) -> Any:
            self.calls += 1
            return self.answer

        libervia_authenticate: Any = answer_later if is_async else answer_now
        self.libervia_authenticate = hookimpl(tryfirst=order == "first", trylast=order == "last")(
            libervia_authenticate)


async def both(pm: Any, **kwargs: Any) -> tuple[Any, Any]:
    hook = pm.hook.libervia_authenticate
    return await call_first(hook, **kwargs), await FirstResultCall(hook)(**kwargs)


async def test_first_result_call_answers_like_call_first() -> None:
    pm = new_plugin_manager()
    cases = [
        [Answers("a", principal("a"))],
        [Answers("a", None), Answers("b", principal("b"))],
        [Answers("a", principal("a"), order="last"), Answers("b", None, is_async=True)],
        [Answers("a", principal("a")), Answers("b", principal("b"), order="first")],
        [Answers("a", None, is_async=True, order="first"), Answers("b", principal("b"), is_async=True)],
        [Answers("a", None), Answers("b", None, is_async=True)],
    ]
    for plugins in cases:
        for plugin in plugins:
            pm.register(plugin, name=plugin.PLUGIN_NAME)
        expected, prepared = await both(pm, gateway=None, request=None, token="t")
        assert prepared == expected
        for plugin in plugins:
            pm.unregister(plugin)


async def test_first_result_call_follows_plugins_registered_later() -> None:
    pm = new_plugin_manager()
    call = FirstResultCall(pm.hook.libervia_authenticate)
    assert await call(gateway=None, request=None, token="t") is None
    first = Answers("first", principal("first"))
    pm.register(first, name="first")
    assert await call(gateway=None, request=None, token="t") == principal("first")
    # A third-party plugin registered after the built-in is asked before it, exactly as pluggy orders them.
    later = Answers("later", principal("later"), is_async=True)
    pm.register(later, name="later")
    assert await call(gateway=None, request=None, token="t") == principal("later")
    assert first.calls == 1
    pm.unregister(later)
    assert await call(gateway=None, request=None, token="t") == principal("first")


async def test_first_result_call_awaits_what_a_sync_implementation_returns() -> None:
    pm = new_plugin_manager()

    async def later() -> Principal:
        await asyncio.sleep(0)
        return ADMIN

    class ReturnsAwaitable:
        @hookimpl
        def libervia_authenticate(self) -> Any:
            return later()

    pm.register(ReturnsAwaitable(), name="awaitable")
    assert await FirstResultCall(pm.hook.libervia_authenticate)(gateway=None, request=None, token="t") == ADMIN


async def test_first_result_call_runs_wrappers_around_the_implementations() -> None:
    pm = new_plugin_manager()
    seen: list[Any] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def libervia_authenticate(self) -> Generator[None, Any, Any]:
            answer = yield
            seen.append(answer)
            return None

    pm.register(Answers("a", ADMIN), name="a")
    call = FirstResultCall(pm.hook.libervia_authenticate)
    assert await call(gateway=None, request=None, token="t") == ADMIN
    pm.register(Wrapper(), name="wrapper")
    assert await call(gateway=None, request=None, token="t") is None
    assert seen == [ADMIN]


async def test_first_result_call_raises_what_an_implementation_raises() -> None:
    pm = new_plugin_manager()

    class Refuses:
        @hookimpl
        def libervia_authenticate(self) -> Any:
            raise ApiError(401, "INVALID_TOKEN", "no")

    pm.register(Refuses(), name="refuses")
    with pytest.raises(ApiError):
        await FirstResultCall(pm.hook.libervia_authenticate)(gateway=None, request=None, token="t")


def test_token_hasher_is_token_hash() -> None:
    hasher = TokenHasher("pepper-" + "p" * 40)
    for token in [new_token() for _ in range(50)] + ["", "é", "x" * 600]:
        assert hasher(token) == token_hash("pepper-" + "p" * 40, token)


def test_checked_tenant_id_is_parse_tenant_id() -> None:
    for raw in ["acme", " Acme ", "ACME-01", "a" * 50, "  " + "b" * 40 + "\t"]:
        assert tenancy.checked_tenant_id(raw) == parse_tenant_id(raw)
        assert tenancy.checked_tenant_id(raw) == parse_tenant_id(raw)  # the remembered answer
    for raw in ["", "a", "admin", "bad--id", "-x-", "a" * 51, "x y"]:
        for _ in range(2):
            with pytest.raises(ApiError) as refused:
                tenancy.checked_tenant_id(raw)
            assert refused.value.code == "INVALID_TENANT_ID"


def test_checked_tenant_id_stays_bounded() -> None:
    for index in range(5000):
        tenancy.checked_tenant_id(f"t-{index}")
    assert tenancy._remembered.cache_info().currsize <= 4096
    tenancy._remembered.cache_clear()   # with room in the table, a kept text would show
    assert tenancy.checked_tenant_id(" " * 100 + "long-text") == "long-text"  # valid, but too long a text to keep
    assert tenancy._remembered.cache_info().currsize == 0


class MemoryRegistryStore(RegistryStore):
    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"format": 1, "tenants": {}}
        self.version_no = 0
        self.usage: dict[str, str] = {}

    async def read(self) -> tuple[str, dict[str, Any]]:
        return str(self.version_no), self.doc

    async def version(self) -> str:
        return str(self.version_no)

    async def update(self, mutate: Any) -> tuple[Any, str, dict[str, Any]]:
        value = mutate(self.doc)
        self.version_no += 1
        return value, str(self.version_no), self.doc

    async def record_key_usage(self, usage: Any) -> None:
        self.usage.update(usage)

    async def key_usage(self) -> dict[str, str]:
        return dict(self.usage)


async def test_key_use_is_formatted_when_read_and_flushed() -> None:
    store = MemoryRegistryStore()
    registry = TenantRegistry(store, "pepper-" + "p" * 40)
    await registry.start()
    try:
        await registry.create_tenant("acme", "Acme", quotas={"rateLimitRpm": 120})
        key, _ = await registry.create_key("acme", "public")
        match = registry.match_token(key.token)
        assert match is not None and match.key_id == key.key_id
        assert registry.list_keys("acme")[0]["lastUsedAt"] is None
        registry.touch_key(key.key_id)
        used = registry.list_keys("acme")[0]["lastUsedAt"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", used)
        assert abs((parse_iso(used) - parse_iso(key.created_at)).total_seconds()) < 60
        await registry.flush_key_usage()
        assert store.usage == {key.key_id: used}
        assert registry.rate_limit_rpm("acme") == 120
        assert registry.rate_limit_rpm("nobody") == 0
        await registry.revoke_key("acme", key.key_id)
        revoked = registry.match_token(key.token)
        assert revoked is not None and revoked.status == "revoked"  # refused by the tenant-key authenticator
        assert registry.match_token(new_token()) is None
    finally:
        await registry.close()


async def test_revoked_key_is_refused_on_its_next_request(tmp_path: Path) -> None:
    async with GatewayHarness(tmp_path / "data") as gateway:
        tenant = await gateway.create_tenant("hotpath")
        for _ in range(3):
            assert (await tenant.public.get("/api/v1/eventlog/status")).status == 200
        keys = (await gateway.admin.get("/admin/tenants/hotpath/keys"))
        key_id = next(k["keyId"] for k in (await keys.json())["keys"] if k["role"] == "public")
        assert (await gateway.admin.post(f"/admin/tenants/hotpath/keys/{key_id}/revoke")).status == 200
        refused = await tenant.public.get("/api/v1/eventlog/status")
        assert refused.status == 401 and (await refused.json())["code"] == "INVALID_TOKEN"
