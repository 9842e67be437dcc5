"""What the pipeline established about a request, read by handlers through these accessors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from libervia.routing import Role

if TYPE_CHECKING:
    from libervia.gateway import Gateway

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("libervia.gateway")
COMMON_HEADERS_KEY: web.AppKey[Callable[[web.Request, web.StreamResponse], None]] = web.AppKey("libervia.headers")

REQUEST_ID = "libervia.request_id"
PRINCIPAL = "libervia.principal"
TENANT_ID = "libervia.tenant_id"
BODY = "libervia.body"
QUERY = "libervia.query"
ROUTE_TEMPLATE = "libervia.route"
LOG_CODE = "libervia.code"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the global admin, or a tenant key of some role."""

    role: Role
    tenant_id: str | None = None
    key_id: str | None = None

    @property
    def actor(self) -> str:
        """The actor recorded in events: the key id, or ``admin`` for the global admin token."""
        return self.key_id or self.role.value


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]


def request_id(request: web.Request) -> str:
    return request.get(REQUEST_ID, "")


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def tenant_id(request: web.Request) -> str:
    """The tenant this request acts on (resolved and authorised by the pipeline)."""
    return request[TENANT_ID]


def body(request: web.Request) -> Any:
    """The request body, parsed and validated against the route's ``body_schema``."""
    return request[BODY]


def query(request: web.Request) -> dict[str, Any]:
    """The query string, coerced and validated against the route's ``query_schema`` (defaults filled in)."""
    return request[QUERY]
