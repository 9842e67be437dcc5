"""The tenant Core over HTTP: the routes of API.md §8, and the runtime admin routes of §7.

Every ``/api/v1`` route below is also served under ``/api/v1/tenants/{tenant}/...`` by the host. Bodies and query
strings are validated against ``schemas/requests/core_*``, ``mandate_*`` and ``review_*`` before a handler runs;
domain rules answer 404, 409 or 422 from the Core itself.

Routes this module adds beyond API.md (documented in the OpenAPI document):

* ``POST /admin/tenants/{id}/reviews`` ``{consequencia_id, motivo, mandateId?}``: open a review case by hand
  (409 ``REVIEW_ALREADY_OPEN`` while the consequence has an OPEN case).
* ``POST /admin/tenants/{id}/reviews/{rid}/notes`` ``{notes}``: amend a case's notes in any state; the previous
  notes stay in the case's ``notes_history``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.core import TenantCore
from libervia.core.commands import Commands

# Short names, so each route entry reads as: method, path, command and where its inputs come from.
from libervia.core_routes import body_field as field
from libervia.core_routes import command_handler as command
from libervia.core_routes import optional_field as optional
from libervia.core_routes import path_arg as path
from libervia.core_routes import request_body as body
from libervia.core_routes import view_handler as view
from libervia.gateway import Gateway
from libervia.panel import instances_view, metrics_view
from libervia.responses import json_response
from libervia.routing import Access, Route

# --- /api/v1 -----------------------------------------------------------------------------------------------------

def _acknowledged(message: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """v1 answered these commands with ``{success, message, ...}``; the episode's status stays beside them."""
    return lambda result: {"success": True, "message": message.format(result["episodio_id"]), **result}


async def _episode(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.episode(request.match_info["id"])


async def _events(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    return await core.events(tipo=query.get("tipo"), entidade=query.get("entidade"), limit=query["limit"],
                             offset=query["offset"])


async def eventlog_status(request: web.Request) -> web.Response:
    log = await context.gateway(request).runtime.event_log(context.tenant_id(request))
    return json_response(log.status())


# --- runtime administration ---------------------------------------------------------------------------------------

async def runtime_health(request: web.Request) -> web.Response:
    return json_response(context.gateway(request).runtime.health())


async def tenant_metrics(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    core = context.gateway(request).runtime.running(tenant_id)
    if core is None:
        return json_response({"tenant": tenant_id, "running": False})
    return json_response({"running": True, **core.metrics()})


async def shutdown_tenant(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    stopped = await context.gateway(request).runtime.shutdown_tenant(tenant_id)
    logger.bind(tenantId=tenant_id, requestId=context.request_id(request)).info(
        "tenant {} instance shutdown requested ({})", tenant_id, "stopped" if stopped else "was not running")
    message = f"Tenant {tenant_id} instance stopped." if stopped else f"Tenant {tenant_id} had no running instance."
    return json_response({"success": True, "stopped": stopped, "message": message})


async def shutdown_all(request: web.Request) -> web.Response:
    stopped = await context.gateway(request).runtime.shutdown_all()
    logger.bind(requestId=context.request_id(request)).info("all tenant instances stopped ({})", stopped)
    return json_response({"success": True, "stopped": stopped, "message": f"{stopped} instance(s) stopped."})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    api, tenant = Access.TENANT_API, "/admin/tenants/{id}"
    manage: dict[str, Any] = {"access": Access.TENANT_MANAGE, "tenant_param": "id"}
    return [
        Route("POST", "/api/v1/decisoes", command(Commands.decide, body, status=201), api, "core.decide",
              body_schema="requests/core_decisao"),
        Route("GET", "/api/v1/episodios/{id}", view(_episode), api, "core.episode"),
        Route("POST", "/api/v1/observacoes", command(Commands.observe, field("episodio_id"),
                                                     answer=_acknowledged("Episode {} is under observation.")),
              api, "core.observe", body_schema="requests/core_observacao"),
        Route("POST", "/api/v1/episodios/{id}/encerrar",
              command(Commands.close_episode, path("id"), answer=_acknowledged("Episode {} closed.")), api,
              "core.close_episode", body_schema="requests/empty"),
        Route("POST", "/api/v1/consequencias", command(Commands.record_consequence, body, status=201), api,
              "core.consequence", body_schema="requests/core_consequencia"),
        Route("POST", "/api/v1/autonomia/avaliar", command(Commands.evaluate_autonomy, body), api,
              "core.autonomy_evaluate", body_schema="requests/core_autonomia_avaliar"),
        Route("GET", "/api/v1/eventos", view(_events), api, "core.events",
              query_schema="requests/core_eventos_query"),
        Route("GET", "/api/v1/eventlog/status", eventlog_status, api, "core.eventlog_status"),

        Route("POST", f"{tenant}/mandates", command(Commands.grant_mandate, body, status=201),
              name="mandate.grant", body_schema="requests/mandate_grant", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/revoke",
              command(Commands.revoke_mandate, path("mid"), field("motivo")), name="mandate.revoke",
              body_schema="requests/mandate_revoke", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/suspend",
              command(Commands.suspend_mandate, path("mid"), optional("reason")), name="mandate.suspend",
              body_schema="requests/mandate_reason", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/resume",
              command(Commands.resume_mandate, path("mid"), optional("reason")), name="mandate.resume",
              body_schema="requests/mandate_reason", **manage),
        Route("POST", f"{tenant}/reviews", command(Commands.open_review, body, status=201), name="review.open",
              body_schema="requests/review_open", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/resolve", command(Commands.resolve_review, path("rid"), body),
              name="review.resolve", body_schema="requests/review_resolve", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/dismiss",
              command(Commands.dismiss_review, path("rid"), field("notes")), name="review.dismiss",
              body_schema="requests/review_dismiss", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/notes",
              command(Commands.update_review_notes, path("rid"), field("notes")), name="review.notes",
              body_schema="requests/review_notes", **manage),

        Route("GET", "/admin/instances", instances_view, Access.GLOBAL_ADMIN, "runtime.instances"),
        Route("GET", "/admin/health", runtime_health, Access.GLOBAL_ADMIN, "runtime.health"),
        Route("GET", "/admin/metrics", metrics_view, Access.GLOBAL_ADMIN, "runtime.metrics"),
        Route("GET", f"{tenant}/metrics", tenant_metrics, Access.TENANT_READ, "runtime.tenant_metrics",
              tenant_param="id"),
        Route("POST", f"{tenant}/shutdown", shutdown_tenant, Access.GLOBAL_ADMIN, "runtime.shutdown_tenant",
              tenant_param="id", body_schema="requests/empty"),
        Route("POST", "/admin/shutdown-all", shutdown_all, Access.GLOBAL_ADMIN, "runtime.shutdown_all",
              body_schema="requests/empty"),
    ]
