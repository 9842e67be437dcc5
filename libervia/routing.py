"""Routes as data: every route says which access group it belongs to, and the pipeline does the rest.

A plugin's ``libervia_routes`` hook returns :class:`Route` objects. The host wraps each handler with the steps its
access group needs (authenticate, resolve tenant, authorise, rate limit, validate the body), so a handler only
does its own job and reads what the pipeline established through :mod:`libervia.context`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Role(enum.StrEnum):
    GLOBAL_ADMIN = "global_admin"
    TENANT_ADMIN = "tenant_admin"
    PUBLIC = "public"


class Access(enum.Enum):
    """Who may call a route. One table (``libervia.authorization``) maps each group to its roles."""

    OPEN = "open"                    # /health: nobody authenticates
    TENANT_API = "tenant_api"        # /api/v1/*: a tenant's public or tenant_admin key; tenant resolved, rate limited
    TENANT_READ = "tenant_read"      # own tenant_admin (even while suspended) or global_admin; read-only
    TENANT_MANAGE = "tenant_manage"  # own tenant_admin of an active tenant, or global_admin
    GLOBAL_ADMIN = "global_admin"    # gateway operators only


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route.

    ``path`` uses aiohttp's ``{name}`` syntax. For ``TENANT_READ`` and ``TENANT_MANAGE`` routes,
    ``tenant_param`` names the path parameter that holds the tenant id. ``TENANT_API`` routes are also served
    under ``/api/v1/tenants/{tenant}/...`` (the path form of tenant resolution) without declaring it twice.
    ``body_schema`` / ``query_schema`` name files under ``schemas/requests/`` (without ``.schema.json``); the
    pipeline validates against them and puts the parsed result in the request context.
    """

    method: str
    path: str
    handler: Handler
    access: Access
    name: str | None = None
    tenant_param: str | None = None
    body_schema: str | None = None
    query_schema: str | None = None
