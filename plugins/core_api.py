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

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.core import TenantCore
from libervia.gateway import Gateway
from libervia.panel import instances_view, metrics_view
from libervia.responses import json_response
from libervia.routing import Access, Route

CoreCall = Callable[[TenantCore, web.Request], Awaitable[dict[str, Any]]]


def _core_route(call: CoreCall, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that runs ``call`` on the request's tenant Core and answers its result as JSON."""

    async def handler(request: web.Request) -> web.Response:
        runtime = context.gateway(request).runtime
        result = await runtime.call(context.tenant_id(request), lambda core: call(core, request))
        return json_response(result, status=status)

    return handler


def _actor(request: web.Request) -> dict[str, Any]:
    return {"actor": context.principal(request).actor, "request_id": context.request_id(request)}


# --- /api/v1 -----------------------------------------------------------------------------------------------------

async def _decide(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.decide(context.body(request), **_actor(request))


async def _episode(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.episode(request.match_info["id"])


async def _observe(core: TenantCore, request: web.Request) -> dict[str, Any]:
    result = await core.observe(context.body(request)["episodio_id"], **_actor(request))
    return {"success": True, "message": f"Episode {result['episodio_id']} is under observation.", **result}


async def _close_episode(core: TenantCore, request: web.Request) -> dict[str, Any]:
    result = await core.close_episode(request.match_info["id"], **_actor(request))
    return {"success": True, "message": f"Episode {result['episodio_id']} closed.", **result}


async def _consequence(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.record_consequence(context.body(request), **_actor(request))


async def _evaluate(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.evaluate_autonomy(context.body(request), **_actor(request))


async def _events(core: TenantCore, request: web.Request) -> dict[str, Any]:
    query = context.query(request)
    return await core.events(tipo=query.get("tipo"), entidade=query.get("entidade"), limit=query["limit"],
                             offset=query["offset"])


async def eventlog_status(request: web.Request) -> web.Response:
    log = await context.gateway(request).runtime.event_log(context.tenant_id(request))
    return json_response(log.status())


# --- mandates and review cases ------------------------------------------------------------------------------------

async def _grant(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.grant_mandate(context.body(request), **_actor(request))


async def _revoke(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.revoke_mandate(request.match_info["mid"], context.body(request)["motivo"], **_actor(request))


async def _suspend(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.suspend_mandate(request.match_info["mid"], context.body(request).get("reason"),
                                      **_actor(request))


async def _resume(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.resume_mandate(request.match_info["mid"], context.body(request).get("reason"),
                                     **_actor(request))


async def _open_review(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.open_review(context.body(request), **_actor(request))


async def _resolve(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.resolve_review(request.match_info["rid"], context.body(request), **_actor(request))


async def _dismiss(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.dismiss_review(request.match_info["rid"], context.body(request)["notes"], **_actor(request))


async def _notes(core: TenantCore, request: web.Request) -> dict[str, Any]:
    return await core.update_review_notes(request.match_info["rid"], context.body(request)["notes"],
                                          **_actor(request))


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
    manage = {"access": Access.TENANT_MANAGE, "tenant_param": "id"}
    return [
        Route("POST", "/api/v1/decisoes", _core_route(_decide, 201), api, "core.decide",
              body_schema="requests/core_decisao"),
        Route("GET", "/api/v1/episodios/{id}", _core_route(_episode), api, "core.episode"),
        Route("POST", "/api/v1/observacoes", _core_route(_observe), api, "core.observe",
              body_schema="requests/core_observacao"),
        Route("POST", "/api/v1/episodios/{id}/encerrar", _core_route(_close_episode), api, "core.close_episode",
              body_schema="requests/empty"),
        Route("POST", "/api/v1/consequencias", _core_route(_consequence, 201), api, "core.consequence",
              body_schema="requests/core_consequencia"),
        Route("POST", "/api/v1/autonomia/avaliar", _core_route(_evaluate), api, "core.autonomy_evaluate",
              body_schema="requests/core_autonomia_avaliar"),
        Route("GET", "/api/v1/eventos", _core_route(_events), api, "core.events",
              query_schema="requests/core_eventos_query"),
        Route("GET", "/api/v1/eventlog/status", eventlog_status, api, "core.eventlog_status"),

        Route("POST", f"{tenant}/mandates", _core_route(_grant, 201), name="mandate.grant",
              body_schema="requests/mandate_grant", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/revoke", _core_route(_revoke), name="mandate.revoke",
              body_schema="requests/mandate_revoke", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/suspend", _core_route(_suspend), name="mandate.suspend",
              body_schema="requests/mandate_reason", **manage),
        Route("POST", f"{tenant}/mandates/{{mid}}/resume", _core_route(_resume), name="mandate.resume",
              body_schema="requests/mandate_reason", **manage),
        Route("POST", f"{tenant}/reviews", _core_route(_open_review, 201), name="review.open",
              body_schema="requests/review_open", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/resolve", _core_route(_resolve), name="review.resolve",
              body_schema="requests/review_resolve", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/dismiss", _core_route(_dismiss), name="review.dismiss",
              body_schema="requests/review_dismiss", **manage),
        Route("POST", f"{tenant}/reviews/{{rid}}/notes", _core_route(_notes), name="review.notes",
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
