"""Composing the per-route steps around a handler, according to the route's access group."""

from __future__ import annotations

from aiohttp import web

from libervia import context
from libervia.errors import AuthError
from libervia.gateway import Gateway
from libervia.hookcalls import FirstResultCall
from libervia.pipeline.authentication import ClientAddress, FailureThrottle, authenticate
from libervia.pipeline.authorization import NEEDS_ACTIVE_TENANT, authorise
from libervia.pipeline.rate_limiting import apply_rate_limit, enforce
from libervia.pipeline.tenancy import (
    TenantConflict,
    claimed_tenant,
    require_known,
    resolve_api_tenant,
    resolve_path_tenant,
)
from libervia.pipeline.validation import validated_body, validated_query
from libervia.ratelimit import tenant_limit_key
from libervia.routing import Access, Handler, Role, Route
from libervia.telemetry import AUTH_FAILURE, TENANT_CONFLICT

UNKNOWN_TENANT_LABEL = "unknown"


class RouteSteps:
    """Builds the aiohttp handler for each :class:`Route` of one gateway."""

    def __init__(self, gateway: Gateway, client_address: ClientAddress) -> None:
        self.gateway = gateway
        auth_cfg = gateway.settings.section("auth")
        # The limiter is created at start-up, before routes are built; the throttle counts through it.
        self.throttle = FailureThrottle(auth_cfg["max_failures"], auth_cfg["failure_window_s"], gateway.rate_limiter)
        self.client_address = client_address   # the request scope's: the access line reuses what this works out
        self.ask_authenticators = FirstResultCall(gateway.pm.hook.libervia_authenticate)
        # A limiter that decides without waiting is charged through hit_now, with no coroutine per request.
        self.limiter = gateway.rate_limiter
        self.limiter_hit_now = getattr(self.limiter, "hit_now", None)

    def tenant_label(self, tenant_id: str | None) -> str:
        if tenant_id and self.gateway.registry.is_registered(tenant_id):
            return tenant_id
        return UNKNOWN_TENANT_LABEL

    def wrap(self, route: Route) -> Handler:
        """The route's handler with the steps its access group needs, chosen here once rather than per request:
        a route without schemas skips the validation frame, an open route every guard."""
        handler = route.handler
        gateway = self.gateway
        registry = gateway.registry
        throttle = self.throttle
        client_address = self.client_address
        ask = self.ask_authenticators
        limiter, hit_now = self.limiter, self.limiter_hit_now
        needs_active = route.access in NEEDS_ACTIVE_TENANT
        query_schema, body_schema = route.query_schema, route.body_schema

        async def validate_then_handle(request: web.Request) -> web.StreamResponse:
            if query_schema:
                context.state(request).query = validated_query(request, query_schema)
            if body_schema:
                context.state(request).body = await validated_body(request, body_schema)
            return await handler(request)

        inner = validate_then_handle if query_schema or body_schema else handler
        if route.access is Access.OPEN:
            # Open routes without schemas (health checks, polled constantly) skip even the validation frame.
            return inner

        async def guarded(request: web.Request) -> web.StreamResponse:
            state = context.state(request)
            address = state.client_address = client_address.of(request)
            try:
                who = await authenticate(gateway, throttle, request, address, ask)
            except AuthError as exc:
                claim = exc.tenant_claim or claimed_tenant(request, route.tenant_param)
                gateway.count(AUTH_FAILURE, reason=exc.reason, tenant_id=self.tenant_label(claim))
                raise
            state.principal = who
            tenant_id = state.tenant_id = self.resolve_tenant(request, route, who)
            try:
                authorise(route.access, who, tenant_id)
            except AuthError as exc:
                gateway.count(AUTH_FAILURE, reason=exc.reason, tenant_id=self.tenant_label(tenant_id))
                raise
            tenant_key = who.role is not Role.GLOBAL_ADMIN
            if tenant_id is not None:
                status = registry.status_of(tenant_id)
                if status is None:
                    await registry.refresh_after_miss()
                    status = registry.status_of(tenant_id)
                require_known(tenant_id, must_be_active=tenant_key and needs_active, status=status)
            if who.key_id is not None:
                registry.touch_key(who.key_id)
                if tenant_id is not None and limiter is not None:
                    limit = registry.rate_limit_rpm(tenant_id)
                    if limit > 0:
                        if hit_now is None:
                            await apply_rate_limit(gateway, limiter, request, tenant_id, limit)
                        else:
                            enforce(gateway, request, tenant_id, limit, hit_now(tenant_limit_key(tenant_id), limit))
            return await inner(request)

        return guarded

    def resolve_tenant(self, request: web.Request, route: Route, who: context.Principal) -> str | None:
        if route.access is Access.TENANT_API:
            try:
                return resolve_api_tenant(request, who)
            except TenantConflict:
                self.gateway.count(TENANT_CONFLICT, tenant_id=self.tenant_label(who.tenant_id))
                if who.tenant_id is not None:
                    context.state(request).tenant_id = who.tenant_id  # the access line names the key's tenant
                raise
        if route.tenant_param:
            return resolve_path_tenant(request, route.tenant_param)
        return None
