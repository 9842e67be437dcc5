"""JSON responses, serialised with orjson (fast, and strict about what it accepts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from libervia.context import COMMON_HEADERS_KEY

JSON_CONTENT_TYPE = "application/json"


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def stream_response(request: web.Request, status: int = 200,
                    headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """A response to stream with ``prepare``/``write``, already carrying the gateway's common headers (request id,
    security, CORS, rate limit). Streaming handlers must build their response with this."""
    response = web.StreamResponse(status=status, headers=headers)
    request.app[COMMON_HEADERS_KEY](request, response)
    return response


# aiohttp copies the headers it is given into the response's own multidict, so one mapping serves every response.
_JSON_ONLY = {"Content-Type": JSON_CONTENT_TYPE}


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # A ready Content-Type header is cheaper than aiohttp's content_type argument, which parses and rebuilds it.
    if not headers:
        return web.Response(body=orjson.dumps(data), status=status, headers=_JSON_ONLY)
    all_headers = CIMultiDict(headers)
    all_headers["Content-Type"] = JSON_CONTENT_TYPE
    return web.Response(body=orjson.dumps(data), status=status, headers=all_headers)
