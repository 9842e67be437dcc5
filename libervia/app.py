"""Assembling one gateway process: start the services the plugins provide, build the aiohttp app, stop cleanly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger

from libervia.context import COMMON_HEADERS_KEY, GATEWAY_KEY
from libervia.errors import StartupError
from libervia.eventlog.checkpoints import CheckpointSigner, derive_checkpoint_key
from libervia.gateway import Gateway
from libervia.hookcalls import await_me_maybe, call_all, call_each, call_first
from libervia.pipeline.request_scope import UNMATCHED_ROUTE, RequestScope, unmatched
from libervia.pipeline.route_steps import RouteSteps
from libervia.plugin_manager import LoadedPlugins
from libervia.ratelimit import tenant_limit_key
from libervia.routing import Access, Route
from libervia.runtime_parts import build_runtime
from libervia.settings import Settings
from libervia.tenants.registry import TenantRegistry

SCOPE_KEY: web.AppKey[RequestScope] = web.AppKey("libervia.scope")
API_PREFIX = "/api/v1"
API_TENANT_PREFIX = "/api/v1/tenants/{tenant}"


def checkpoint_key(settings: Settings) -> bytes:
    explicit = settings.get("checkpoint_key")
    return explicit.encode() if explicit else derive_checkpoint_key(settings.auth_pepper)


async def start_gateway(settings: Settings, plugins: LoadedPlugins) -> Gateway:
    """Open storage, the registry, the runtimes and the limiter, then run every ``libervia_startup`` hook."""
    gateway = Gateway(settings, plugins.pm, plugins.configs)
    gateway.checkpoint_signer = CheckpointSigner(checkpoint_key(settings))
    storage = await call_first(plugins.pm.hook.libervia_storage, gateway=gateway)
    if storage is None:
        raise StartupError([f"storage: plugin {settings.get('storage')!r} provided no storage"])
    await storage.start()
    gateway.storage = storage
    gateway.registry = TenantRegistry(storage.registry, settings.auth_pepper, settings.get("registry_refresh_s"))
    await gateway.registry.start()
    gateway.runtime = build_runtime(gateway)
    gateway.registry.on_tenants_gone(lambda tenant_ids: forget_purged(gateway, tenant_ids))
    await gateway.runtime.start()
    gateway.rate_limiter = await call_first(plugins.pm.hook.libervia_rate_limiter, gateway=gateway)
    await call_all(plugins.pm.hook.libervia_startup, gateway=gateway)
    return gateway


async def forget_purged(gateway: Gateway, tenant_ids: set[str]) -> None:
    """Tenants purged through any process: drop their instances (writing nothing) and let every plugin forget
    them, so no route, key or metric of this process shows the old tenant through a new one of the same id."""
    try:
        await gateway.runtime.discard_tenants(tenant_ids)
    except Exception:
        logger.opt(exception=True).error("dropping the instances of purged tenants failed: {}", sorted(tenant_ids))
    forget_limit = getattr(gateway.rate_limiter, "forget", None)
    for tenant_id in sorted(tenant_ids):
        if forget_limit is not None:   # a new tenant of the id must not inherit the old one's spent quota
            try:
                await await_me_maybe(forget_limit(tenant_limit_key(tenant_id)))
            except Exception:
                logger.opt(exception=True).error("the rate limiter failed to forget purged tenant {}", tenant_id)
        # Every plugin hears of every purged tenant, whichever of them fails to forget one.
        for plugin, exc in await call_each(gateway.pm.hook.libervia_tenant_purged, gateway=gateway,
                                           tenant_id=tenant_id):
            logger.opt(exception=exc).error("plugin {} failed to forget purged tenant {}", plugin, tenant_id)


async def stop_gateway(gateway: Gateway) -> None:
    """Run shutdown hooks, flush and close every tenant log, then the registry, the limiter and storage.

    Each step runs even if an earlier one failed: a failure here must not leave a tenant log unflushed.
    """
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("plugin shutdown hooks", lambda: call_all(gateway.pm.hook.libervia_shutdown, gateway=gateway)),
        ("tenant runtimes", gateway.runtime.close),
        ("tenant registry", gateway.registry.close),
    ]
    if gateway.rate_limiter is not None:
        steps.append(("rate limiter", gateway.rate_limiter.close))
    steps.append(("storage", gateway.storage.close))
    for name, step in steps:
        try:
            await step()
        except Exception:
            logger.opt(exception=True).error(f"shutdown: closing the {name} failed")


def collect_routes(gateway: Gateway) -> list[Route]:
    routes: list[Route] = []
    for batch in gateway.pm.hook.libervia_routes(gateway=gateway):
        routes.extend(batch or [])
    return routes


def create_app(gateway: Gateway) -> web.Application:
    scope = RequestScope(gateway)
    app = web.Application(client_max_size=gateway.settings.max_body_bytes,
                          handler_args={"max_field_size": 16384, "lingering_time": 2.0})
    app[GATEWAY_KEY] = gateway
    app[SCOPE_KEY] = scope
    app[COMMON_HEADERS_KEY] = scope.decorate
    steps = RouteSteps(gateway, scope.client_address)
    seen: dict[tuple[str, str], str] = {}
    routes = collect_routes(gateway)
    declared_head = {route.path for route in routes if route.method.upper() == "HEAD"}
    for route in routes:
        paths = [route.path]
        if route.access is Access.TENANT_API and route.path.startswith(API_PREFIX + "/"):
            paths.append(API_TENANT_PREFIX + route.path[len(API_PREFIX):])
        guarded = steps.wrap(route)
        # HEAD answers like GET without a body (aiohttp drops the body of a HEAD response).
        methods = [route.method.upper(), "HEAD"] if route.method.upper() == "GET" else [route.method.upper()]
        for path in paths:
            key = (route.method.upper(), path)
            if key in seen:
                raise StartupError([f"plugins: route {key[0]} {path} is declared twice ({seen[key]}, {route.name})"])
            seen[key] = route.name or path
            for method in methods:
                if method == "HEAD" and path in declared_head:
                    continue  # a plugin declares its own HEAD route for this path
                app.router.add_route(method, path, scope.around(guarded, path))
    # Last, so that it only sees what no route took: JSON 404/405 and CORS preflights, inside the same scope.
    app.router.add_route("*", "/{path:.*}", scope.around(unmatched, UNMATCHED_ROUTE), name=UNMATCHED_ROUTE)
    return app
