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


@dataclass(slots=True)
class RequestState:
    """Everything the pipeline establishes about one request, in one object stored on the request once.

    (aiohttp's request mapping answers a missing key by raising KeyError, which is slow on the hot path;
    attributes with defaults are not.)
    """

    request_id: str
    principal: Principal | None = None
    tenant_id: str | None = None
    body: Any = None
    query: dict[str, Any] | None = None
    rate_limit_headers: dict[str, str] | None = None
    client_address: str | None = None   # for the access line, when a step has worked it out already
    streamed: web.StreamResponse | None = None   # a streaming handler's response (libervia.responses.stream_response)


STATE: web.RequestKey[RequestState] = web.RequestKey("libervia.state", RequestState)


def state(request: web.Request) -> RequestState:
    return request[STATE]


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]


def request_id(request: web.Request) -> str:
    return request[STATE].request_id


def principal(request: web.Request) -> Principal:
    who = request[STATE].principal
    assert who is not None, "principal() on a route that does not authenticate"
    return who


def tenant_id(request: web.Request) -> str:
    """The tenant this request acts on (resolved and authorised by the pipeline)."""
    tenant = request[STATE].tenant_id
    assert tenant is not None, "tenant_id() on a route that names no tenant"
    return tenant


def body(request: web.Request) -> Any:
    """The request body, parsed and validated against the route's ``body_schema``."""
    return request[STATE].body


def query(request: web.Request) -> dict[str, Any]:
    """The query string, coerced and validated against the route's ``query_schema`` (defaults filled in)."""
    return request[STATE].query or {}
