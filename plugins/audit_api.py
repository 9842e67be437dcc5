"""The audit routes of API.md §7: verify, verify-fast, export, replay, checkpoints and the event list.

Every route reads a tenant's log through the storage protocols only, so it serves the file store and PostgreSQL
alike. The work on a large log (verification, replay, export) interleaves with other requests: entries arrive in
chunks from the store's I/O and the verifier yields to the event loop between them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.clock import format_iso, parse_iso
from libervia.errors import validation_error
from libervia.eventlog.verify import ExportManifest, ReplayFilter, replay, verify_fast, verify_full
from libervia.gateway import Gateway
from libervia.responses import json_response, stream_response
from libervia.routing import Access, Route
from libervia.storage import TenantEventLog

NDJSON = "application/x-ndjson"
_FLUSH_BYTES = 64 * 1024  # export writes to the socket in pieces of about this size


async def _tenant_log(request: web.Request) -> TenantEventLog:
    return await context.gateway(request).runtime.event_log(context.tenant_id(request))


async def audit_verify(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    tenant_id = context.tenant_id(request)
    log = await _tenant_log(request)
    checkpoints = await gateway.storage.events.checkpoints(tenant_id)
    return json_response(await verify_full(log, checkpoints, gateway.checkpoint_signer))


async def audit_verify_fast(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    tenant_id = context.tenant_id(request)
    log = await _tenant_log(request)
    checkpoints = await gateway.storage.events.checkpoints(tenant_id)
    return json_response(await verify_fast(log, checkpoints, gateway.checkpoint_signer))


async def audit_checkpoints(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    tenant_id = context.tenant_id(request)
    signer = gateway.checkpoint_signer
    checkpoints = await gateway.storage.events.checkpoints(tenant_id)
    listed = [{"seq": cp.seq, "hash": cp.hash, "ts": cp.ts, "signature": cp.signature,
               "signatureValid": signer.verify(cp)} for cp in checkpoints]
    return json_response({"tenant": tenant_id, "checkpoints": listed, "count": len(listed)})


async def tenant_events(request: web.Request) -> web.Response:
    query = context.query(request)
    limit, offset = query["limit"], query["offset"]
    log = await _tenant_log(request)
    total = (await log.head()).seq
    # v1 clients read ``timestamp``; the stored field is ``ts``: both are given.
    events = [{**entry, "timestamp": entry["ts"]} async for entry in log.entries(offset + 1, offset + limit)
              ] if offset < total else []
    return json_response({"events": events, "count": len(events), "total": total})


def _timestamp(query: dict[str, Any], name: str) -> str | None:
    """A timestamp bound normalised to the log's own format, so bounds and entries compare as text."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return format_iso(parse_iso(raw))
    except ValueError:
        raise validation_error([{"path": f"$.{name}", "message": f"{raw!r} is not an RFC 3339 date-time"}]
                               ) from None


def _ordered(low: Any, high: Any, low_name: str, high_name: str) -> None:
    if low is not None and high is not None and low > high:
        raise validation_error([{"path": f"$.{low_name}", "message": f"{low_name} is after {high_name}"}])


async def audit_replay(request: web.Request) -> web.Response:
    query = context.query(request)
    from_ts, to_ts = _timestamp(query, "fromTs"), _timestamp(query, "toTs")
    _ordered(from_ts, to_ts, "fromTs", "toTs")
    flt = ReplayFilter(evento=query.get("evento"), entidade=query.get("entidade"),
                       entidade_id=query.get("entidadeId"), from_ts=from_ts, to_ts=to_ts)
    return json_response(await replay(await _tenant_log(request), flt))


async def audit_export(request: web.Request) -> web.StreamResponse:
    """Stream the selected entries: one JSON document ``{entries, manifest}``, or NDJSON on request.

    NDJSON is one entry per line, exactly as stored, then a last line ``{"manifest": {...}}``. Both forms are
    written as they are read, so an export of any size needs no more memory than one chunk.
    """
    query = context.query(request)
    from_seq, to_seq = query.get("fromSeq", 1), query.get("toSeq")
    from_ts, to_ts = _timestamp(query, "fromTs"), _timestamp(query, "toTs")
    _ordered(from_seq, to_seq, "fromSeq", "toSeq")
    _ordered(from_ts, to_ts, "fromTs", "toTs")
    ndjson = NDJSON in request.headers.get("Accept", "")
    flt = ReplayFilter(from_ts=from_ts, to_ts=to_ts)
    log = await _tenant_log(request)
    selected = (entry async for entry in log.entries(from_seq, to_seq) if flt.matches(entry))
    # Read the first entry before answering, so that a store failure still becomes a proper JSON error.
    first = await anext(selected, None)
    response = stream_response(request, headers={"Content-Type": NDJSON if ndjson else "application/json"})
    await response.prepare(request)
    manifest = ExportManifest()
    try:
        await _write_export(response, _chain(first, selected), manifest, ndjson)
    except Exception:
        # The status line is gone; cutting the connection is the only way left to tell the client.
        logger.bind(requestId=context.request_id(request), tenantId=context.tenant_id(request)).exception(
            "export of the event log failed midway")
        raise
    await response.write_eof()
    return response


async def _chain(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
                 ) -> AsyncIterator[dict[str, Any]]:
    if first is None:
        return
    yield first
    async for entry in rest:
        yield entry


async def _write_export(response: web.StreamResponse, entries: AsyncIterator[dict[str, Any]],
                        manifest: ExportManifest, ndjson: bool) -> None:
    buffer = bytearray() if ndjson else bytearray(b'{"entries":[')
    async for entry in entries:
        if not ndjson and manifest.count:
            buffer += b","
        # orjson keeps the stored key order, so each NDJSON line is byte-for-byte its stored line; the JSON form
        # (v1's) adds v1's ``timestamp`` after the stored fields (drop it before recomputing a hash).
        buffer += orjson.dumps(entry if ndjson else {**entry, "timestamp": entry["ts"]})
        if ndjson:
            buffer += b"\n"
        manifest.add(entry)
        if len(buffer) >= _FLUSH_BYTES:
            await response.write(bytes(buffer))
            buffer.clear()
    if ndjson:
        buffer += orjson.dumps({"manifest": manifest.as_dict()}) + b"\n"
    else:
        buffer += b'],"manifest":' + orjson.dumps(manifest.as_dict()) + b"}"
    await response.write(bytes(buffer))


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    base = "/admin/tenants/{id}"

    def read(path: str, handler: Any, name: str, query_schema: str | None = None) -> Route:
        return Route("GET", base + path, handler, Access.TENANT_READ, name=name, tenant_param="id",
                     query_schema=query_schema)

    return [
        read("/audit/verify", audit_verify, "audit_verify"),
        read("/audit/verify-fast", audit_verify_fast, "audit_verify_fast"),
        read("/audit/export", audit_export, "audit_export", "requests/audit_export"),
        read("/audit/replay", audit_replay, "audit_replay", "requests/audit_replay"),
        read("/audit/checkpoints", audit_checkpoints, "audit_checkpoints"),
        read("/events", tenant_events, "tenant_events", "requests/audit_events"),
    ]
