"""Test plugin: an open route that takes as long as asked, to test graceful shutdown; one that holds the event loop
for as long as asked; one that crashes; and one whose streamed body fails midway."""

import asyncio
import time

from aiohttp import web

from libervia import hookimpl
from libervia.responses import json_response, stream_response
from libervia.routing import Access, Route

PLUGIN_NAME = "slow_route"


async def slow(request: web.Request) -> web.Response:
    seconds = min(float(request.query.get("s", "1")), 10.0)
    await asyncio.sleep(seconds)
    return json_response({"slept": seconds})


async def busy(request: web.Request) -> web.Response:
    seconds = min(float(request.query.get("s", "0.1")), 2.0)
    time.sleep(seconds)  # holds the event loop, as CPU-bound work would
    return json_response({"busy": seconds})


async def broken_stream(request: web.Request) -> web.StreamResponse:
    response = stream_response(request, headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await response.write(b'{"line": 1}\n')
    raise RuntimeError("the stream's source failed midway")


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("boom: secret-looking detail that must not reach the client")


@hookimpl
def libervia_routes(gateway):
    return [Route("GET", "/test/slow", slow, Access.OPEN, name="slow"),
            Route("GET", "/test/busy", busy, Access.OPEN, name="busy"),
            Route("GET", "/test/broken-stream", broken_stream, Access.OPEN, name="broken_stream"),
            Route("GET", "/test/crash", crash, Access.OPEN, name="crash")]
