"""Reading and validating request bodies and query strings against the route's JSON Schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from libervia.errors import ApiError, bad_request, validation_error
from libervia.schemas import coerce_query, validate_request

MAX_JSON_DEPTH = 64


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value``, computed without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(current, dict):
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {limit} bytes.")


async def read_json_body(request: web.Request) -> Any:
    """The parsed body; an empty body reads as ``{}``. 400 ``INVALID_JSON`` or 413 ``PAYLOAD_TOO_LARGE``."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise payload_too_large(request.app._client_max_size) from None
    if not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("INVALID_JSON", f"The request body is not valid JSON: {exc}") from None
    # Schema validation recurses through the document; a hostile nesting depth must not reach it.
    if nesting_depth(parsed) > MAX_JSON_DEPTH:
        raise validation_error([{"path": "$", "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}])
    return parsed


async def validated_body(request: web.Request, schema_name: str) -> Any:
    return validate_request(await read_json_body(request), schema_name)


def validated_query(request: web.Request, schema_name: str) -> dict[str, Any]:
    return coerce_query(request.query.items(), schema_name)
