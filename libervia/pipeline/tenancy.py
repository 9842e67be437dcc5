"""Tenant resolution (API.md §3): from ``X-Tenant-Id``, the path, or the key itself; they must agree."""

from __future__ import annotations

import functools

from aiohttp import web

from libervia.context import Principal
from libervia.errors import ApiError, bad_request, forbidden, not_found
from libervia.routing import Role
from libervia.tenants.ids import normalize_tenant_id, parse_tenant_id

TENANT_HEADER = "X-Tenant-Id"
PATH_TENANT_PARAM = "tenant"

# Only short texts are remembered (a valid id is at most 50 characters once stripped), so that the table stays
# small whatever clients send; least recently used ones go first, so no client can flush the ids in use.
_MAX_KEPT_TEXT = 64


@functools.lru_cache(maxsize=4096)
def _remembered(raw: str) -> str:
    return parse_tenant_id(raw)   # refusals raise, and are not remembered


def checked_tenant_id(raw: str) -> str:
    """:func:`parse_tenant_id` (a pure function of the text), remembering the texts that passed: most requests
    name one of a few tenants."""
    return _remembered(raw) if len(raw) <= _MAX_KEPT_TEXT else parse_tenant_id(raw)


class TenantConflict(ApiError):
    def __init__(self, header: str | None, path: str | None, token: str | None, *,
                 message: str = "The tenant named by the header, the path and the key do not agree.") -> None:
        super().__init__(400, "TENANT_CONFLICT", message, details={"header": header, "path": path, "token": token})


def claimed_tenant(request: web.Request, tenant_param: str | None) -> str | None:
    """The tenant a request claims before anyone checked it: used only to label failure metrics."""
    raw = request.match_info.get(tenant_param or PATH_TENANT_PARAM) or request.headers.get(TENANT_HEADER)
    return normalize_tenant_id(raw) if raw else None


def resolve_api_tenant(request: web.Request, who: Principal) -> str:
    """The tenant of an ``/api/v1`` request. Raises TENANT_CONFLICT, MISSING_TENANT_ID or INVALID_TENANT_ID."""
    headers = request.headers.getall(TENANT_HEADER, ())
    raw_path = request.match_info.get(PATH_TENANT_PARAM)
    if not headers and raw_path is None and who.tenant_id is not None and who.role is not Role.GLOBAL_ADMIN:
        return checked_tenant_id(who.tenant_id)  # only the key names a tenant: the common case
    if len(headers) > 1:
        # Proxies and frameworks disagree on which of two copies wins: refuse rather than guess.
        raise TenantConflict(", ".join(headers), request.match_info.get(PATH_TENANT_PARAM),
                             who.tenant_id if who.role is not Role.GLOBAL_ADMIN else None,
                             message=f"{TENANT_HEADER} is sent {len(headers)} times; send it once.")
    raw_header = headers[0] if headers else None
    header = normalize_tenant_id(raw_header) if raw_header is not None and raw_header.strip() else None
    path = normalize_tenant_id(raw_path) if raw_path is not None else None
    token = who.tenant_id if who.role is not Role.GLOBAL_ADMIN else None
    named = {value for value in (header, path, token) if value is not None}
    if len(named) > 1:
        raise TenantConflict(header, path, token)
    if not named:
        raise bad_request("MISSING_TENANT_ID", "No tenant given: send X-Tenant-Id or use /api/v1/tenants/{id}/...")
    return checked_tenant_id(named.pop())


def resolve_path_tenant(request: web.Request, tenant_param: str) -> str:
    return checked_tenant_id(request.match_info[tenant_param])


def require_known(tenant_id: str, *, must_be_active: bool, status: str | None) -> None:
    """Refuse an unknown tenant (404: ``status`` None) or, when ``must_be_active``, one that is not active (403).
    ``status`` is the tenant's status as the caller read it from the registry."""
    if status is None:
        raise not_found("TENANT_NOT_FOUND", f"Tenant {tenant_id!r} does not exist.")
    if must_be_active and status != "active":
        raise forbidden("TENANT_SUSPENDED", f"Tenant {tenant_id!r} is {status}.")
