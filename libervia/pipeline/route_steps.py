"""Composing the per-route steps around a handler, according to the route's access group."""

from __future__ import annotations

from aiohttp import web

from libervia import context
from libervia.errors import AuthError
from libervia.gateway import Gateway
from libervia.pipeline.authentication import ClientAddress, FailureThrottle, authenticate
from libervia.pipeline.authorization import NEEDS_ACTIVE_TENANT, authorise
from libervia.pipeline.rate_limiting import apply_rate_limit
from libervia.pipeline.tenancy import (
    TenantConflict,
    claimed_tenant,
    require_known,
    resolve_api_tenant,
    resolve_path_tenant,
)
from libervia.pipeline.validation import validated_body, validated_query
from libervia.routing import Access, Handler, Role, Route
from libervia.telemetry import AUTH_FAILURE, TENANT_CONFLICT

UNKNOWN_TENANT_LABEL = "unknown"


class RouteSteps:
    """Builds the aiohttp handler for each :class:`Route` of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        auth_cfg = gateway.settings.section("auth")
        # The limiter is created at start-up, before routes are built; the throttle counts through it.
        self.throttle = FailureThrottle(auth_cfg["max_failures"], auth_cfg["failure_window_s"], gateway.rate_limiter)
        self.client_address = ClientAddress.from_settings(gateway.settings)

    def tenant_label(self, tenant_id: str | None) -> str:
        if tenant_id and self.gateway.registry.is_registered(tenant_id):
            return tenant_id
        return UNKNOWN_TENANT_LABEL

    def wrap(self, route: Route) -> Handler:
        handler = route.handler
        gateway = self.gateway

        async def validate_then_handle(request: web.Request) -> web.StreamResponse:
            if route.query_schema:
                context.state(request).query = validated_query(request, route.query_schema)
            if route.body_schema:
                context.state(request).body = await validated_body(request, route.body_schema)
            return await handler(request)

        if route.access is Access.OPEN:
            # Open routes without schemas (health checks, polled constantly) skip even the validation frame.
            return validate_then_handle if route.query_schema or route.body_schema else handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            address = self.client_address.of(request)
            try:
                who = await authenticate(gateway, self.throttle, request, address)
            except AuthError as exc:
                claim = exc.tenant_claim or claimed_tenant(request, route.tenant_param)
                gateway.count(AUTH_FAILURE, reason=exc.reason, tenant_id=self.tenant_label(claim))
                raise
            state = context.state(request)
            state.principal = who
            tenant_id = self.resolve_tenant(request, route, who)
            state.tenant_id = tenant_id
            try:
                authorise(route.access, who, tenant_id)
            except AuthError as exc:
                gateway.count(AUTH_FAILURE, reason=exc.reason, tenant_id=self.tenant_label(tenant_id))
                raise
            if tenant_id is not None:
                if gateway.registry.status_of(tenant_id) is None:
                    await gateway.registry.refresh_after_miss()
                tenant_key = who.role is not Role.GLOBAL_ADMIN
                require_known(gateway.registry, tenant_id,
                              must_be_active=tenant_key and route.access in NEEDS_ACTIVE_TENANT)
            if who.key_id is not None:
                gateway.registry.touch_key(who.key_id)
                if tenant_id is not None and gateway.rate_limiter is not None:
                    await apply_rate_limit(gateway, request, tenant_id)
            return await validate_then_handle(request)

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
