"""Tenant lifecycle and API keys: the admin routes of API.md §6.

Registry changes are durable before the response; each one that matters for audit is also written to the
tenant's own event log (TENANT_SUSPENDED, TENANT_RESUMED, KEY_CREATED, KEY_REVOKED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.clock import now_iso
from libervia.core.model import Entity, EventType
from libervia.errors import invalid_state
from libervia.gateway import Gateway
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.storage import EventDraft, TenantEventLog

TOTAL_HEADER = "X-Total-Count"
KEY_WARNING = "Save this token now: it is shown only once and cannot be recovered."


async def _open_log(request: web.Request, tenant_id: str) -> TenantEventLog:
    """The tenant's log, opened before the registry changes, so that a broken log refuses the change up front."""
    return await context.gateway(request).runtime.event_log(tenant_id)


async def _record(request: web.Request, log: TenantEventLog, evento: EventType, entidade: Entity,
                  entidade_id: str, payload: dict[str, Any]) -> None:
    await log.append([EventDraft(evento.value, entidade.value, entidade_id, payload,
                                 actor=context.principal(request).actor, request_id=context.request_id(request))])


async def create_tenant(request: web.Request) -> web.Response:
    body = context.body(request)
    registry = context.gateway(request).registry
    tenant = await registry.create_tenant(body["id"], body["name"], body.get("quotas"), body.get("features"),
                                          body.get("metadata"))
    logger.bind(tenantId=tenant["id"], requestId=context.request_id(request)).info(f"tenant {tenant['id']} created")
    return json_response(tenant, status=201)


async def list_tenants(request: web.Request) -> web.Response:
    query = context.query(request)
    registry = context.gateway(request).registry
    status = query.get("status")
    include_deleted = query["includeDeleted"] or status == "deleted"
    tenants = registry.all(include_deleted=include_deleted, status=status)
    page = tenants[query["offset"]: query["offset"] + query["limit"]]
    # The contract makes this list a bare JSON array, so its total travels in a header.
    return json_response(page, headers={TOTAL_HEADER: str(len(tenants))})


async def get_tenant(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    return json_response(context.gateway(request).registry.get(tenant_id))


async def update_tenant(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    tenant = await context.gateway(request).registry.update_tenant(tenant_id, context.body(request))
    return json_response(tenant)


async def delete_tenant(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    gateway = context.gateway(request)
    await gateway.registry.set_status(tenant_id, "deleted", ("active", "suspended"))
    await gateway.runtime.shutdown_tenant(tenant_id)
    logger.bind(tenantId=tenant_id).info(f"tenant {tenant_id} deleted (data kept)")
    return json_response({"success": True, "message": f"Tenant {tenant_id} deleted; its data is kept."})


async def purge_tenant(request: web.Request) -> web.Response:
    """Remove a deleted tenant for good: its running instance and caches, its stored data, its registry entry
    and its metric series. The id can then be created again and starts at genesis."""
    tenant_id = context.tenant_id(request)
    gateway = context.gateway(request)
    if gateway.registry.status_of(tenant_id) != "deleted":
        raise invalid_state(f"Tenant {tenant_id!r} must be deleted before it is purged.")
    purge_data = getattr(gateway.storage.registry, "purge_tenant_data", None)
    if purge_data is None:
        raise invalid_state(f"The storage {gateway.storage.name!r} cannot purge tenant data; nothing was changed.")
    await gateway.runtime.forget_tenant(tenant_id)
    moment = now_iso()
    where = await purge_data(tenant_id, moment.replace(":", "").replace(".", ""))
    await gateway.registry.purge_tenant(tenant_id)
    # The registry hears of the purge as of any other process's (``libervia.app.forget_purged`` tells every
    # plugin, once); the answer waits for that, so no series or cache of the old tenant outlives the 200.
    await gateway.registry.listeners_settled()
    actor = context.principal(request).actor
    logger.bind(tenantId=tenant_id, requestId=context.request_id(request), actor=actor, purgedAt=moment,
                purgedData=where, code="TENANT_PURGED").warning(
        f"tenant {tenant_id} purged by {actor} at {moment}: data {where or 'none'}; its id can be reused")
    return json_response({"success": True, "message": f"Tenant {tenant_id} purged; its id can be reused.",
                          "purgedAt": moment})


def _status_change(new_status: str, allowed_from: tuple[str, ...], evento: EventType,
                   verb: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def change(request: web.Request) -> web.Response:
        tenant_id = context.tenant_id(request)
        reason = context.body(request).get("reason")
        gateway = context.gateway(request)
        log = await _open_log(request, tenant_id)
        tenant = await gateway.registry.set_status(tenant_id, new_status, allowed_from, reason)
        await _record(request, log, evento, Entity.TENANT, tenant_id, {"status": new_status, "reason": reason})
        logger.bind(tenantId=tenant_id, code=evento).warning(f"tenant {tenant_id} {verb}: {reason or 'no reason'}")
        return json_response({"success": True, "message": f"Tenant {tenant_id} {verb}.", "tenant": tenant})

    return change


suspend_tenant = _status_change("suspended", ("active",), EventType.TENANT_SUSPENDED, "suspended")
resume_tenant = _status_change("active", ("suspended",), EventType.TENANT_RESUMED, "resumed")


async def _issue_key(request: web.Request, revoke_old: bool) -> web.Response:
    tenant_id = context.tenant_id(request)
    body = context.body(request)
    registry = context.gateway(request).registry
    revoke_roles = (body["role"],) if revoke_old else ()
    log = await _open_log(request, tenant_id)
    key, revoked = await registry.create_key(tenant_id, body["role"], body.get("description"), revoke_roles)
    for key_id in revoked:
        await _record(request, log, EventType.KEY_REVOKED, Entity.API_KEY, key_id,
                      {"keyId": key_id, "rotatedTo": key.key_id})
    await _record(request, log, EventType.KEY_CREATED, Entity.API_KEY, key.key_id,
                  {"keyId": key.key_id, "role": key.role})
    response: dict[str, Any] = {"keyId": key.key_id, "role": key.role, "token": key.token,
                                "createdAt": key.created_at, "warning": KEY_WARNING}
    if revoke_old:
        response["revokedKeyIds"] = revoked
    return json_response(response, status=201)


async def create_key(request: web.Request) -> web.Response:
    return await _issue_key(request, revoke_old=False)


async def rotate_keys(request: web.Request) -> web.Response:
    return await _issue_key(request, revoke_old=context.body(request)["revokeOld"])


async def list_keys(request: web.Request) -> web.Response:
    keys = context.gateway(request).registry.list_keys(context.tenant_id(request))
    return json_response({"keys": keys, "count": len(keys)})


async def revoke_key(request: web.Request) -> web.Response:
    tenant_id = context.tenant_id(request)
    key_id = request.match_info["keyId"]
    log = await _open_log(request, tenant_id)
    result = await context.gateway(request).registry.revoke_key(tenant_id, key_id)
    await _record(request, log, EventType.KEY_REVOKED, Entity.API_KEY, key_id, {"keyId": key_id})
    return json_response({"success": True, "message": f"Key {key_id} revoked.", **result})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    tenant = "/admin/tenants/{id}"
    return [
        Route("POST", "/admin/tenants", create_tenant, Access.GLOBAL_ADMIN, "tenant.create",
              body_schema="requests/tenant_create"),
        Route("GET", "/admin/tenants", list_tenants, Access.GLOBAL_ADMIN, "tenant.list",
              query_schema="requests/tenant_list_query"),
        Route("GET", tenant, get_tenant, Access.TENANT_READ, "tenant.get", tenant_param="id"),
        Route("PATCH", tenant, update_tenant, Access.GLOBAL_ADMIN, "tenant.update", tenant_param="id",
              body_schema="requests/tenant_update"),
        Route("DELETE", tenant, delete_tenant, Access.GLOBAL_ADMIN, "tenant.delete", tenant_param="id"),
        Route("POST", f"{tenant}/purge", purge_tenant, Access.GLOBAL_ADMIN, "tenant.purge", tenant_param="id",
              body_schema="requests/empty"),
        Route("POST", f"{tenant}/suspend", suspend_tenant, Access.GLOBAL_ADMIN, "tenant.suspend",
              tenant_param="id", body_schema="requests/tenant_status_change"),
        Route("POST", f"{tenant}/resume", resume_tenant, Access.GLOBAL_ADMIN, "tenant.resume",
              tenant_param="id", body_schema="requests/tenant_status_change"),
        Route("POST", f"{tenant}/keys", create_key, Access.TENANT_MANAGE, "key.create", tenant_param="id",
              body_schema="requests/key_create"),
        Route("GET", f"{tenant}/keys", list_keys, Access.TENANT_READ, "key.list", tenant_param="id"),
        Route("POST", f"{tenant}/keys/rotate", rotate_keys, Access.TENANT_MANAGE, "key.rotate", tenant_param="id",
              body_schema="requests/key_rotate"),
        Route("POST", f"{tenant}/keys/{{keyId}}/revoke", revoke_key, Access.TENANT_MANAGE, "key.revoke",
              tenant_param="id", body_schema="requests/empty"),
    ]
