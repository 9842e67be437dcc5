"""Reading and validating request bodies and query strings against the route's JSON Schemas.

No request may hold the event loop for long: a body larger than ``INLINE_BODY_BYTES`` is parsed, depth-checked
and validated in a worker thread (pure-Python work there yields the interpreter to the loop every few
milliseconds), and so is every refused body's error collection, which is bounded anyway (``MAX_DETAILS``).
Small valid bodies, the common case, never leave the loop: the compiled check takes microseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from libervia.errors import ApiError, bad_request, validation_error
from libervia.schemas import SchemaRef, coerce_query, compile_schema
from libervia.strict_json import loads_strict

MAX_JSON_DEPTH = 64
INLINE_BODY_BYTES = 16 * 1024

# Two threads: hostile bodies queue behind each other instead of multiplying the interpreter's contention.
_workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="libervia-validate")


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


def parse_json(raw: bytes) -> Any:
    """The parsed body; an empty body reads as ``{}``. 400 ``INVALID_JSON``, or ``VALIDATION_ERROR`` when it
    nests deeper than ``MAX_JSON_DEPTH``."""
    if not raw.strip():
        return {}
    try:
        parsed = loads_strict(raw)
    except ValueError as exc:
        raise bad_request("INVALID_JSON", f"The request body is not valid JSON: {exc}") from None
    # Schema validation recurses through the document; a hostile nesting depth must not reach it. A document
    # with fewer brackets than the limit cannot nest deeper, and counting bytes costs next to nothing.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nesting_depth(parsed) > MAX_JSON_DEPTH:
        raise validation_error([{"path": "$", "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}])
    return parsed


async def _read(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise payload_too_large(request.app._client_max_size) from None


async def off_loop(func: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_workers, func, *args)


def _parse_and_validate(raw: bytes, schema: SchemaRef) -> Any:
    return compile_schema(schema).validate(parse_json(raw))


async def validated_body(request: web.Request, schema: SchemaRef) -> Any:
    raw = await _read(request)
    if len(raw) > INLINE_BODY_BYTES:
        return await off_loop(_parse_and_validate, raw, schema)
    compiled = compile_schema(schema)
    parsed = parse_json(raw)
    if compiled.accepts(parsed):
        return parsed
    return await off_loop(compiled.explain, parsed)  # refused: only jsonschema's account is left to run


def validated_query(request: web.Request, schema: SchemaRef) -> dict[str, Any]:
    return coerce_query(request.query.items(), schema)
