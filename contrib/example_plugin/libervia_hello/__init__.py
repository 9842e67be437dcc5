"""An example Libervia plugin: ``GET /api/v1/hello`` greets the calling tenant.

It shows the three things most plugins do: declare a configuration schema (validated at start-up, defaults
filled in), read that configuration through the gateway, and serve a route that the host protects (the route's
access group means the caller is authenticated, the tenant resolved and rate limited before the handler runs).

Settings (``settings.toml``)::

    [default.plugin.hello]
    greeting = "Bom dia"
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libervia import context, hookimpl
from libervia.gateway import Gateway
from libervia.responses import json_response
from libervia.routing import Access, Route, schema_resource

PLUGIN_NAME = "hello"


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return schema_resource(__name__, "hello.schema.json")


async def hello(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    config = gateway.plugin_config(PLUGIN_NAME)
    greeting = f"{config['greeting']}, {context.tenant_id(request)}"
    return json_response({"greeting": greeting.upper() if config["shout"] else greeting,
                          "role": context.principal(request).role.value})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return [Route("GET", "/api/v1/hello", hello, Access.TENANT_API, name="hello")]
