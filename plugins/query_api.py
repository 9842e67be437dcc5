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

from typing import Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.core import TenantCore
from libervia.core_routes import view_handler as _tenant_view
from libervia.errors import not_found
from libervia.gateway import Gateway
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.storage import StorageError
from libervia_plugins.core_api import list_instances, runtime_metrics  # the panel shows the same views


def _page(items: list[dict[str, Any]], query: dict[str, Any], key: str) -> dict[str, Any]:
    limit, offset = query["limit"], query["offset"]
    return {key: items[offset:offset + limit], "total": len(items), "limit": limit, "offset": offset}


async def _mandates(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    mandates = await core.mandates(status=query.get("status"), agent_id=query.get("agentId"))
    return _page(mandates, query, "mandates")


async def _mandate(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.mandate(request.match_info["mandateId"])


async def _reviews(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    return _page(await core.reviews(status=query.get("status")), query, "reviews")


async def _review(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.review(request.match_info["reviewId"])


async def _consequences(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return _page(await core.consequences(), context.query(request), "consequences")


async def _consequence(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.consequence(request.match_info["consequenceId"])


async def _dashboard(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.dashboard()


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


async def query_eventlog(request: web.Request) -> web.Response:
    """One tenant's log status (``?tenantId=``), or every registered tenant's, opening no log that is closed."""
    gateway = context.gateway(request)
    tenant_id = context.query(request).get("tenantId")
    if tenant_id is not None:
        if gateway.registry.get(tenant_id) is None:
            raise not_found("TENANT_NOT_FOUND", f"Tenant {tenant_id} does not exist.")
        log = await gateway.runtime.event_log(tenant_id)
        return json_response({"tenantId": tenant_id, "open": True, **log.status()})
    rows = []
    for tenant in gateway.registry.all():
        log_status = gateway.runtime.open_log_status(tenant["id"])
        rows.append({"tenantId": tenant["id"], "open": log_status is not None, **(log_status or {})})
    return json_response({"eventlogs": rows, "count": len(rows)})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    tenant = "/admin/query/{tenantId}"
    read: dict[str, Any] = {"access": Access.TENANT_READ, "tenant_param": "tenantId"}
    return [
        Route("GET", "/admin/query/tenants", query_tenants, Access.GLOBAL_ADMIN, "query.tenants"),
        Route("GET", "/admin/query/instances", list_instances, Access.GLOBAL_ADMIN, "query.instances"),
        Route("GET", "/admin/query/metrics", runtime_metrics, Access.GLOBAL_ADMIN, "query.metrics"),
        Route("GET", "/admin/query/eventlog", query_eventlog, Access.GLOBAL_ADMIN, "query.eventlog",
              query_schema="requests/query_eventlog"),
        Route("GET", f"{tenant}/mandates", _tenant_view(_mandates), name="query.mandates",
              query_schema="requests/query_mandates", **read),
        Route("GET", f"{tenant}/mandates/{{mandateId}}", _tenant_view(_mandate), name="query.mandate", **read),
        Route("GET", f"{tenant}/reviews", _tenant_view(_reviews), name="query.reviews",
              query_schema="requests/query_reviews", **read),
        Route("GET", f"{tenant}/reviews/{{reviewId}}", _tenant_view(_review), name="query.review", **read),
        Route("GET", f"{tenant}/consequences", _tenant_view(_consequences), name="query.consequences",
              query_schema="requests/query_page", **read),
        Route("GET", f"{tenant}/consequences/{{consequenceId}}", _tenant_view(_consequence),
              name="query.consequence", **read),
        Route("GET", f"{tenant}/dashboard", _tenant_view(_dashboard), name="query.dashboard", **read),
    ]
