"""The audit routes of API.md §7: verify, verify-fast, export, replay, checkpoints and the event list.

Every route reads a tenant's log through the storage protocols only, so it serves the file store and PostgreSQL
alike. The work on a large log (verification, replay, export) interleaves with other requests: entries arrive in
chunks from the store's I/O and the verifier yields to the event loop between them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.clock import format_iso, parse_iso
from libervia.errors import validation_error
from libervia.eventlog.chain import entry_hash, has_entry_shape
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.verify import YIELD_EVERY, check_entry, close_entries, entry_id, verify_fast, verify_full
from libervia.gateway import Gateway
from libervia.responses import json_response, stream_response
from libervia.routing import Access, Route
from libervia.storage import Checkpoint, StorageError, TenantEventLog

NDJSON = "application/x-ndjson"
_FLUSH_BYTES = 64 * 1024  # export writes to the socket in pieces of about this size


# --- export ------------------------------------------------------------------------------------------------------

class ExportManifest:
    """The manifest of an export: what it holds and whether its entries chain among themselves."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Mapping[str, Any] | None = None
        self.last: Mapping[str, Any] | None = None
        self.chain_valid = True

    def add(self, entry: Mapping[str, Any]) -> None:
        if self.chain_valid:
            self.chain_valid = self._links(entry)
        if self.first is None:
            self.first = entry
        self.last = entry
        self.count += 1

    def _links(self, entry: Mapping[str, Any]) -> bool:
        try:
            if entry_hash(entry) != entry.get("hash"):
                return False
        except (TypeError, UnicodeEncodeError):
            return False
        if self.last is None:
            return True
        seq, last_seq = entry.get("seq"), self.last.get("seq")
        if not isinstance(seq, int) or not isinstance(last_seq, int) or seq <= last_seq:
            return False
        # Time filters may leave gaps; entries that are neighbours in the log must still link.
        return seq != last_seq + 1 or entry.get("prev") == self.last.get("hash")

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "firstSeq": self.first.get("seq") if self.first else None,
            "lastSeq": self.last.get("seq") if self.last else None,
            "firstHash": self.first.get("hash") if self.first else None,
            "lastHash": self.last.get("hash") if self.last else None,
            "chainValidWithinExport": self.chain_valid,
        }


# --- replay ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReplayFilter:
    evento: str | None = None
    entidade: str | None = None
    entidade_id: str | None = None
    from_ts: str | None = None  # normalised RFC 3339 (libervia.clock.format_iso), compared as text
    to_ts: str | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if self.evento is not None and entry.get("evento") != self.evento:
            return False
        if self.entidade is not None and entry.get("entidade") != self.entidade:
            return False
        if self.entidade_id is not None and entry.get("entidade_id") != self.entidade_id:
            return False
        ts = entry.get("ts")
        if self.from_ts is not None and not (isinstance(ts, str) and ts >= self.from_ts):
            return False
        return self.to_ts is None or (isinstance(ts, str) and ts <= self.to_ts)


class Replay:
    """Aggregates of the entries matching a filter, and every chain inconsistency of the whole log.

    Unlike verification it does not stop at a fault: after one it resynchronises on the entry it found, so one
    deleted line is reported once, not as a fault of every later entry.
    """

    def __init__(self, tenant: str, flt: ReplayFilter) -> None:
        self.tenant = tenant
        self.filter = flt
        self.total = 0
        self.by_event: Counter[str] = Counter()
        self.by_entity: Counter[str] = Counter()
        self.by_actor: Counter[str] = Counter()
        self.first: Mapping[str, Any] | None = None
        self.last: Mapping[str, Any] | None = None
        self.inconsistencies: list[dict[str, Any]] = []
        self._expected_seq = 1
        self._prev: str | None = None

    def add(self, entry: dict[str, Any]) -> None:
        reason = check_entry(entry, self._expected_seq, self._prev, self.tenant)
        if reason is not None:
            self.inconsistencies.append({"seq": self._expected_seq, "id": entry_id(entry), "reason": reason})
        if not has_entry_shape(entry):
            self._expected_seq += 1
            return
        seq = entry["seq"]
        self._expected_seq = seq + 1 if isinstance(seq, int) else self._expected_seq + 1
        self._prev = entry["hash"] if isinstance(entry["hash"], str) else None
        if not self.filter.matches(entry):
            return
        self.total += 1
        self.by_event[str(entry["evento"])] += 1
        self.by_entity[str(entry["entidade"])] += 1
        actor = entry["actor"]
        self.by_actor[actor if isinstance(actor, str) else "unknown"] += 1
        if self.first is None:
            self.first = entry
        self.last = entry

    def unreadable(self, reason: str) -> None:
        self.inconsistencies.append({"seq": self._expected_seq, "id": None, "reason": f"unreadable entry: {reason}"})

    def as_dict(self) -> dict[str, Any]:
        return {
            "totalEventos": self.total,
            "porEvento": dict(self.by_event),
            "porEntidade": dict(self.by_entity),
            "porAtor": dict(self.by_actor),
            "range": {
                "fromSeq": self.first["seq"] if self.first else None,
                "toSeq": self.last["seq"] if self.last else None,
                "fromTs": self.first["ts"] if self.first else None,
                "toTs": self.last["ts"] if self.last else None,
            },
            "inconsistencias": self.inconsistencies,
        }


async def replay(log: TenantEventLog, flt: ReplayFilter) -> dict[str, Any]:
    """Aggregate the whole log (API.md §7 ``audit/replay``)."""
    result = Replay(log.tenant_id, flt)
    entries = log.entries(1)
    count = 0
    try:
        async for entry in entries:
            result.add(entry)
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    except StorageError as exc:
        result.unreadable(str(exc))
    finally:
        await close_entries(entries)
    return result.as_dict()


# --- routes ------------------------------------------------------------------------------------------------------

async def _tenant_log(request: web.Request) -> TenantEventLog:
    return await context.gateway(request).runtime.event_log(context.tenant_id(request))


Verify = Callable[[TenantEventLog, Sequence[Checkpoint], CheckpointSigner], Awaitable[dict[str, Any]]]


def _verify_route(verify: Verify) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``verify`` (full or fast) of the request's tenant log against its stored checkpoints."""

    async def handler(request: web.Request) -> web.Response:
        gateway = context.gateway(request)
        log = await _tenant_log(request)
        checkpoints = await gateway.storage.events.checkpoints(context.tenant_id(request))
        return json_response(await verify(log, checkpoints, gateway.checkpoint_signer))

    return handler


audit_verify = _verify_route(verify_full)
audit_verify_fast = _verify_route(verify_fast)


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
