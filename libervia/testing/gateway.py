"""An in-process gateway for tests: the real host, the real plugins, a real aiohttp server on a free port.

:class:`GatewayHarness` builds settings from a mapping (the same validation as ``libervia serve``: one
:class:`libervia.errors.StartupError` listing every problem), registers the built-ins, the installed entry points,
``plugins.load`` and the extra plugin objects you pass (registered last, so they are asked first), starts the
gateway exactly as ``libervia serve`` does (:func:`libervia.app.start_gateway`, :func:`libervia.app.create_app`)
and serves it on 127.0.0.1. Clients per role talk HTTP to that server::

    async with GatewayHarness(base_dir, {"plugin": {"hello": {"greeting": "Oi"}}}, plugins=[my_plugin]) as gw:
        tenant = await gw.create_tenant("acme")
        response = await tenant.public.get("/api/v1/hello")
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from libervia.app import create_app, start_gateway, stop_gateway
from libervia.errors import StartupError
from libervia.gateway import Gateway
from libervia.plugin_manager import LoadedPlugins, load_plugins
from libervia.settings import RAW_PREFIXED, Settings, load_settings
from libervia.settings import _merge as merge_settings

ADMIN_TOKEN = "kit-admin-token-" + "a" * 32
AUTH_PEPPER = "kit-pepper-" + "p" * 40
# Tests send bad tokens from one address on purpose; the throttle has its own tests.
DEFAULTS: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "auth_pepper": AUTH_PEPPER, "env": "test",
                            "auth": {"max_failures": 1_000_000}}


def _toml_value(value: Any) -> str:
    """A value as the TOML literal the settings loader parses from ``LIBERVIA_*`` variables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON strings and arrays of scalars are valid TOML literals.
    return json.dumps(value)


def settings_environ(settings: Mapping[str, Any], base_dir: Path) -> dict[str, str]:
    """``LIBERVIA_*`` variables for a settings mapping (nested tables become ``__``-separated names)."""
    merged: dict[str, Any] = merge_settings(DEFAULTS, settings)
    merged.setdefault("base_dir", str(base_dir))
    environ: dict[str, str] = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            name = f"{prefix}{key.upper()}"
            if isinstance(value, Mapping):
                walk(f"{name}__", value)
            elif value is not None:
                raw = prefix == "" and key.upper() in RAW_PREFIXED
                environ[f"LIBERVIA_{name}"] = str(value) if raw else _toml_value(value)

    env = merged.pop("env")
    walk("", merged)
    environ["LIBERVIA_ENV"] = str(env)
    return environ


def build_settings(settings: Mapping[str, Any], base_dir: Path) -> Settings:
    """Validated settings from a mapping; no settings file and no process environment is read."""
    # A settings file that does not exist: the mapping is the only layer.
    return load_settings(settings_environ(settings, base_dir), settings_file=str(base_dir / "no-settings.toml"))


def build_plugins(settings: Settings, plugins: Sequence[object] = ()) -> LoadedPlugins:
    loaded, problems = load_plugins(settings, extra=plugins)
    if problems:
        raise StartupError(problems)
    return loaded


def _default_body(json_body: Any, kwargs: Mapping[str, Any]) -> Any:
    """``{}`` when neither a JSON body nor raw ``data`` is given (the API's write routes expect an object)."""
    if json_body is None and "data" not in kwargs:
        return {}
    return json_body


class RoleClient:
    """HTTP to the harness's server with one bearer token (or none)."""

    def __init__(self, client: TestClient[Any, Any], token: str | None) -> None:
        self._client = client
        self.token = token

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      headers: Mapping[str, str] | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        if json_body is not None:
            kwargs["json"] = json_body
        response = await self._client.request(method, path, headers=self.headers(headers), **kwargs)
        await response.read()   # so the body can be read after the connection is reused
        return response

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json_body: Any = None, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, json_body=_default_body(json_body, kwargs), **kwargs)

    async def put(self, path: str, json_body: Any = None, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PUT", path, json_body=_default_body(json_body, kwargs), **kwargs)

    async def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PATCH", path, json_body=_default_body(json_body, kwargs), **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("DELETE", path, **kwargs)


@dataclass(frozen=True)
class TenantAccess:
    """A tenant created through the admin API, with a client for each of its key roles."""

    tenant_id: str
    tenant_admin: RoleClient
    public: RoleClient


class GatewayHarness:
    """Start with ``async with`` (or :meth:`start` / :meth:`stop`)."""

    def __init__(self, base_dir: Path, settings: Mapping[str, Any] | None = None,
                 plugins: Sequence[object] = ()) -> None:
        self.base_dir = base_dir
        self.settings = build_settings(settings or {}, base_dir)
        self.plugins = build_plugins(self.settings, plugins)
        self._client: TestClient[Any, Any] | None = None
        self._gateway: Gateway | None = None

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the gateway is not started")
        return self._gateway

    @property
    def client(self) -> TestClient[Any, Any]:
        if self._client is None:
            raise RuntimeError("the gateway is not started")
        return self._client

    async def start(self) -> GatewayHarness:
        gateway = await start_gateway(self.settings, self.plugins)
        try:
            client: TestClient[Any, Any] = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
            await client.start_server()
        except BaseException:
            await stop_gateway(gateway)
            raise
        self._gateway, self._client = gateway, client
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._gateway is not None:
            await stop_gateway(self._gateway)
            self._gateway = None

    async def __aenter__(self) -> GatewayHarness:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    def as_role(self, token: str | None) -> RoleClient:
        return RoleClient(self.client, token)

    @property
    def admin(self) -> RoleClient:
        """The global admin (the settings' ``admin_token``)."""
        return self.as_role(self.settings.admin_token)

    @property
    def anonymous(self) -> RoleClient:
        return self.as_role(None)

    async def create_key(self, tenant_id: str, role: str) -> str:
        response = await self.admin.post(f"/admin/tenants/{tenant_id}/keys", {"role": role})
        if response.status != 201:
            raise AssertionError(f"creating a {role} key for {tenant_id}: {response.status} {await response.text()}")
        return str((await response.json())["token"])

    async def create_tenant(self, tenant_id: str | None = None, **fields: Any) -> TenantAccess:
        """A new active tenant (``POST /admin/tenants``) with one tenant_admin and one public key."""
        tenant_id = tenant_id or f"t-{secrets.token_hex(4)}"
        response = await self.admin.post("/admin/tenants", {"id": tenant_id, "name": tenant_id, **fields})
        if response.status != 201:
            raise AssertionError(f"creating tenant {tenant_id}: {response.status} {await response.text()}")
        return TenantAccess(tenant_id, self.as_role(await self.create_key(tenant_id, "tenant_admin")),
                            self.as_role(await self.create_key(tenant_id, "public")))
