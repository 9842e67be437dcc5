"""Test plugin: an open route that takes as long as asked, to test graceful shutdown, and one that crashes."""

import asyncio

from aiohttp import web

from libervia import hookimpl
from libervia.responses import json_response
from libervia.routing import Access, Route

PLUGIN_NAME = "slow_route"


async def slow(request: web.Request) -> web.Response:
    seconds = min(float(request.query.get("s", "1")), 10.0)
    await asyncio.sleep(seconds)
    return json_response({"slept": seconds})


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("boom: secret-looking detail that must not reach the client")


@hookimpl
def libervia_routes(gateway):
    return [Route("GET", "/test/slow", slow, Access.OPEN, name="slow"),
            Route("GET", "/test/crash", crash, Access.OPEN, name="crash")]
