"""Read-only panel views of API.md §7: ``/admin/query/...``.

Gateway-wide views (tenants, instances, metrics, event logs) are for global admins; the per-tenant views
(mandates, reviews, consequences, dashboard) are open to the tenant's own tenant_admin too, even while the tenant
is suspended.

``GET /admin/query/tenants`` counts each tenant's active and suspended mandates without starting every tenant's
Core on every call: :meth:`libervia.runtime.TenantRuntime.mandate_counts` answers from a running Core, else from
the counts the tenant had when its Core last ran in this process (kept after eviction), else 0 for a tenant
without an event log. Only a tenant that has a log but never ran in this process is started, once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.clock import now_iso
from libervia.core import TenantCore
from libervia.core_routes import view_handler as _tenant_view
from libervia.errors import not_found
from libervia.gateway import Gateway
from libervia.panel import instances_view, metrics_view
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.storage import StorageError


async def _list_view(core: TenantCore, query: dict[str, Any], kind: str, shown: Callable[[dict[str, Any]], Any],
                     **filters: str | None) -> dict[str, Any]:
    """``{kind: page, total, limit, offset}``, read a page at a time from the record index
    (:meth:`~libervia.core.TenantCore.listed`)."""
    items, total = await core.listed(kind, offset=query["offset"], limit=query["limit"], **filters)
    return _listing(kind, [shown(item) for item in items], total, query)


def _listing(kind: str, page: list[Any], total: int, query: dict[str, Any]) -> dict[str, Any]:
    return {kind: page, "total": total, "limit": query["limit"], "offset": query["offset"]}


def _v1_mandate(mandate: dict[str, Any]) -> dict[str, Any]:
    return {**mandate, "createdAt": mandate["grantedAt"]}


def _v1_review(review: dict[str, Any]) -> dict[str, Any]:
    return {**review, "createdAt": review["opened_at"]}


async def _mandates(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    status, agent_id = query.get("status"), query.get("agentId")
    if agent_id is not None:   # found by the agent's own list of mandates
        found = await core.mandates(status=status, agent_id=agent_id)
        page = found[query["offset"]:query["offset"] + query["limit"]]
        return _listing("mandates", [_v1_mandate(m) for m in page], len(found), query)
    return await _list_view(core, query, "mandates", _v1_mandate, status=status)


async def _mandate(core: TenantCore, request: web.Request) -> dict[str, Any]:
    # v1 answered {mandate, history}; the mandate's own fields stay at the top level beside them.
    mandate = _v1_mandate(await core.mandate(request.match_info["mandateId"]))
    return {**mandate, "mandate": mandate, "history": mandate.get("history", [])}


async def _reviews(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    return await _list_view(core, query, "reviews", _v1_review, status=query.get("status"))


async def _review(core: TenantCore, request: web.Request) -> dict[str, Any]:
    review = _v1_review(await core.review(request.match_info["reviewId"]))
    return {**review, "reviewCase": review}


async def _consequences(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    return await _list_view(core, query, "consequences", dict, contrato_id=query.get("contratoId"))


async def _consequence(core: TenantCore, request: web.Request) -> dict[str, Any]:
    observacao = await core.consequence(request.match_info["consequenceId"])
    return {**observacao, "observacao": observacao}


async def _dashboard(core: TenantCore, request: web.Request) -> dict[str, Any]:
    dashboard = await core.dashboard()
    tenant = context.gateway(request).registry.get(core.tenant_id) or {}
    # v1's ``tenant`` is an object; the id it replaced is ``tenantId``. v1 read ``ts`` on recent events.
    return {**dashboard, "tenantId": core.tenant_id,
            "tenant": {"id": core.tenant_id, "name": tenant.get("name"), "status": tenant.get("status")},
            "recentEvents": [{**event, "ts": event["timestamp"]} for event in dashboard["recentEvents"]],
            "timestamp": now_iso()}


async def query_tenants(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    rows = []
    for tenant in gateway.registry.all():
        try:
            mandates: dict[str, int] | None = await gateway.runtime.mandate_counts(tenant["id"])
        except StorageError as exc:
            # One tenant with unreadable data must not hide every other tenant from the operators' list.
            logger.bind(tenantId=tenant["id"]).error(f"mandate counts of tenant {tenant['id']} unavailable: {exc}")
            mandates = None
        rows.append({"id": tenant["id"], "name": tenant["name"], "status": tenant["status"],
                     "createdAt": tenant["createdAt"], "mandates": mandates})
    return json_response(rows)


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "timestamp": entry["ts"]}   # v1 read ``timestamp``; the stored field is ``ts``


def _panel_order(entry: dict[str, Any]) -> tuple[Any, ...]:
    return entry["ts"], entry["tenant"], entry["seq"]


async def _oldest_matches(gateway: Gateway, tenant_id: str, query: dict[str, Any], keep: int
                          ) -> tuple[list[dict[str, Any]], int]:
    """The ``keep`` first matching entries of one log in the panel's order, and how many match in all. Only
    ``keep`` (and a bounded batch) are held at a time, however long the log."""
    event_type, entity_type = query.get("eventType"), query.get("entityType")
    log = await gateway.runtime.event_log(tenant_id)
    kept: list[dict[str, Any]] = []
    total = 0
    async for entry in log.entries():
        if (event_type is None or entry["evento"] == event_type) and (entity_type is None
                                                                      or entry["entidade"] == entity_type):
            total += 1
            kept.append(entry)
            if len(kept) >= 2 * keep + 1024:
                kept = heapq.nsmallest(keep, kept, key=_panel_order)
    return heapq.nsmallest(keep, kept, key=_panel_order), total


async def query_eventlog(request: web.Request) -> web.Response:
    """The panel's event log: v1's ``{events (oldest first), total, limit, offset}`` of one tenant (``tenantId``)
    or of every tenant, beside each log's status (``eventlogs``, opening for that no log that is closed).

    One tenant's page comes from its Core (:meth:`~libervia.core.TenantCore.event_page`: counters and the part of
    the log before the page). Every tenant's page is merged from each log's first ``offset + limit`` matches,
    so a request holds that many entries per log, not the whole history of the gateway."""
    gateway = context.gateway(request)
    query = context.query(request)
    limit, offset = query["limit"], query["offset"]
    tenant_id = query.get("tenantId")
    if tenant_id is not None:
        if gateway.registry.get(tenant_id) is None:
            raise not_found("TENANT_NOT_FOUND", f"Tenant {tenant_id} does not exist.")
        log = await gateway.runtime.event_log(tenant_id)
        page, total = await gateway.runtime.call(tenant_id, lambda core: core.event_page(
            tipo=query.get("eventType"), entidade=query.get("entityType"), limit=limit, offset=offset,
            oldest_first=True))
        status = log.status()
        # ``events`` is v1's list here; the log's own event count moves to ``eventCount``.
        return json_response({"tenantId": tenant_id, "open": True, **status, "eventCount": status.get("events"),
                              **_listing("events", [_shown(entry) for entry in page], total, query)})
    rows: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    total = 0
    with_logs = set(await gateway.storage.events.tenant_ids())
    for tenant in gateway.registry.all():
        log_status = gateway.runtime.open_log_status(tenant["id"])
        rows.append({"tenantId": tenant["id"], "open": log_status is not None, **(log_status or {})})
        if tenant["id"] in with_logs:
            first, matching = await _oldest_matches(gateway, tenant["id"], query, offset + limit)
            merged = heapq.nsmallest(offset + limit, merged + first, key=_panel_order)
            total += matching
    return json_response({"eventlogs": rows, "count": len(rows),
                          **_listing("events", [_shown(e) for e in merged[offset:]], total, query)})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    tenant = "/admin/query/{tenantId}"
    read: dict[str, Any] = {"access": Access.TENANT_READ, "tenant_param": "tenantId"}
    return [
        Route("GET", "/admin/query/tenants", query_tenants, Access.GLOBAL_ADMIN, "query.tenants"),
        Route("GET", "/admin/query/instances", instances_view, Access.GLOBAL_ADMIN, "query.instances"),
        Route("GET", "/admin/query/metrics", metrics_view, Access.GLOBAL_ADMIN, "query.metrics"),
        Route("GET", "/admin/query/eventlog", query_eventlog, Access.GLOBAL_ADMIN, "query.eventlog",
              query_schema="requests/query_eventlog"),
        Route("GET", f"{tenant}/mandates", _tenant_view(_mandates), name="query.mandates",
              query_schema="requests/query_mandates", **read),
        Route("GET", f"{tenant}/mandates/{{mandateId}}", _tenant_view(_mandate), name="query.mandate", **read),
        Route("GET", f"{tenant}/reviews", _tenant_view(_reviews), name="query.reviews",
              query_schema="requests/query_reviews", **read),
        Route("GET", f"{tenant}/reviews/{{reviewId}}", _tenant_view(_review), name="query.review", **read),
        Route("GET", f"{tenant}/consequences", _tenant_view(_consequences), name="query.consequences",
              query_schema="requests/query_consequences", **read),
        Route("GET", f"{tenant}/consequences/{{consequenceId}}", _tenant_view(_consequence),
              name="query.consequence", **read),
        Route("GET", f"{tenant}/dashboard", _tenant_view(_dashboard), name="query.dashboard", **read),
    ]
