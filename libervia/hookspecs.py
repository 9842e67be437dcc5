"""Every hook a Libervia plugin can implement. This module is the plugin author's manual; the reference
``docs/plugins/hooks.md`` is generated from it (``python -m libervia.hookdocs``) and a test keeps the two equal.

A plugin is a module (or any object) with functions named after these specs and marked with
``libervia.hookimpl``. It is found in one of four ways:

* built in: the modules of ``libervia_plugins`` (the ``plugins/`` folder) that the host registers itself;
* installed: a distribution that declares an entry point in the ``libervia`` group
  (``[project.entry-points.libervia] myplugin = "my_package.plugin"``);
* listed: a dotted module path in the ``plugins.load`` setting;
* handed over by code: ``libervia.testing`` registers a test's plugin objects this way.

Plugins are registered in that order. pluggy calls implementations last-registered-first, so a plugin you
install or list runs before the built-ins and can override any first-result hook. A plugin can be kept out with
``plugins.block = ["name"]``. A function whose name starts with ``libervia_`` but matches no spec below stops
start-up (a typo never silently does nothing).

Every hook receives keyword arguments only, and a plugin may accept any subset of them. Hooks marked *may be
awaitable* can return a coroutine instead of a value (write them ``async def``); the host awaits it. For
first-result hooks the host resolves each implementation's result before deciding whether to try the next one,
so an ``async def`` implementation that returns ``None`` correctly means "not mine". The other hooks are
synchronous: a coroutine returned from one would never run.

Ordering and wrappers, on every hook: ``@hookimpl(tryfirst=True)`` runs before the others, ``trylast=True``
after them. ``@hookimpl(wrapper=True)`` (a generator with one ``yield``) runs around the whole call: its code
before the ``yield`` runs before any implementation, the ``yield`` returns the result (for awaitable hooks the
*awaited* result: a principal, never a coroutine) or raises the implementations' exception, and what the wrapper
returns becomes the result. Old-style ``hookwrapper=True`` wrappers receive pluggy's ``Result`` and work too.
A wrapper itself is always synchronous (a generator, not an ``async def``); pluggy refuses anything else when the
plugin is registered.

``LIBERVIA_TRACE_PLUGINS=1`` logs every hook call as one JSON line (hook, implementations in call order, result
kind, time taken, arguments with secrets masked).

The :class:`libervia.gateway.Gateway` passed as ``gateway`` gives access to the validated settings
(``gateway.settings``), your plugin's own validated configuration (``gateway.plugin_config("name")``), the
storage, the tenant registry, the tenant runtimes and the telemetry helpers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from libervia import PROJECT_NAME

if TYPE_CHECKING:
    from aiohttp import web

    from libervia.context import Principal
    from libervia.core.policy import AutonomyPolicy, ClosedLayerRule, ConsequencePolicy, RuleSet
    from libervia.gateway import Gateway
    from libervia.ratelimit import RateLimiter
    from libervia.routing import Route
    from libervia.storage import CheckResult, Storage
    from libervia.telemetry import RequestObservation

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

# Hooks whose implementations may return an awaitable: the host runs them through libervia.hookcalls.
MAY_BE_AWAITABLE = frozenset({
    "libervia_startup", "libervia_shutdown", "libervia_readiness_checks", "libervia_authenticate",
    "libervia_rate_limiter", "libervia_storage", "libervia_render_metrics", "libervia_closed_layer_rules",
    "libervia_autonomy_policy", "libervia_consequence_policy", "libervia_tenant_purged",
})


# --- configuration ---------------------------------------------------------------------------------------------

@hookspec
def libervia_config_schema() -> dict[str, Any] | None:
    """Declare the JSON Schema (draft 2020-12) of this plugin's settings section.

    Called: once per plugin at start-up, before anything else.

    Returns:
        The schema as a dict, or None if the plugin has no settings.

    The plugin's section is the ``plugin.<name>`` table of the settings (``[default.plugin.ratelimit_redis]`` in
    ``settings.toml``, or environment variables such as ``LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL``). The host
    validates that section against the schema, fills in the schema's ``default`` values, and refuses to start
    with one line per violation naming the plugin and the JSON path. Read the result with
    ``gateway.plugin_config("<name>")``. Built-in plugins keep their schema in
    ``schemas/plugins/<name>.schema.json``; third-party plugins return a dict built in code or loaded from their
    own package data.
    """


# --- lifecycle -------------------------------------------------------------------------------------------------

@hookspec
def libervia_startup(gateway: Gateway) -> Awaitable[None] | None:
    """Open connections, start background tasks, warm caches.

    Called: once, after settings and plugin configs are validated and storage, registry, runtimes and the rate
    limiter are up, before the first request is served. Every plugin's implementation is called.

    Args:
        gateway: the gateway being started; every service attribute is set.

    Returns:
        Nothing (or an awaitable that the host awaits). Raising :class:`libervia.errors.StartupError` refuses
        start-up with its lines printed and exit code 2.
    """


@hookspec
def libervia_shutdown(gateway: Gateway) -> Awaitable[None] | None:
    """Flush buffers and close what ``libervia_startup`` opened.

    Called: once on graceful shutdown, after in-flight requests finished (or timed out), before tenant logs, the
    registry, the limiter and storage close. Every plugin's implementation is called; an exception is logged
    and never stops the others.

    Args:
        gateway: the gateway being stopped; storage is still open.

    Returns:
        Nothing (or an awaitable that the host awaits).
    """


@hookspec
def libervia_readiness_checks(
    gateway: Gateway,
) -> dict[str, CheckResult] | Awaitable[dict[str, CheckResult]] | None:
    """Contribute named checks to ``GET /health/ready``.

    Called: on every readiness request; every plugin's implementation is called. Keep them cheap: load balancers
    call readiness often.

    Args:
        gateway: the running gateway.

    Returns:
        ``{"redis": CheckResult(ok=True)}`` (a :class:`libervia.storage.CheckResult` per name), or None. Any failed
        check turns readiness into 503 naming it.
    """


# --- HTTP ------------------------------------------------------------------------------------------------------

@hookspec
def libervia_routes(gateway: Gateway) -> list[Route]:
    """Declare the HTTP routes this plugin serves.

    Called: once, when the aiohttp application is built (after ``libervia_startup``); every plugin's
    implementation is called and the routes are added in call order. Two plugins declaring the same method and
    path stop start-up.

    Args:
        gateway: the started gateway.

    Returns:
        A list of :class:`libervia.routing.Route`. Each names its access group; the host applies authentication,
        tenant resolution, authorisation, rate limiting and schema validation (a built-in schema name, a dict or a
        package resource) before the handler runs, and renders any :class:`libervia.errors.ApiError` raised as the
        JSON error body. Build responses with :func:`libervia.responses.json_response`; a streaming handler uses
        :func:`libervia.responses.stream_response`, which sets the gateway's common headers before anything is
        sent.
    """
    return []   # a spec's body never runs; this keeps the declared type honest for type checkers


@hookspec(firstresult=True)
def libervia_authenticate(gateway: Gateway, request: web.Request, token: str) -> Principal | None:
    """Decide who presents a bearer token. Tri-state.

    Called: on every request to a route that is not open, in call order until one implementation answers
    something other than None.

    Args:
        gateway: the running gateway.
        request: the aiohttp request (headers, remote address); the body is not read yet.
        token: the part after ``Authorization: Bearer``. A secret: compare it in constant time
            (``hmac.compare_digest``) and never log it.

    Returns:
        None when the token is not yours (the next plugin is asked), or a :class:`libervia.context.Principal`
        (accepted, no further plugin is asked). Raise :class:`libervia.errors.AuthError` to reject it outright
        (a revoked key, an expired signature). If every plugin returns None the request fails with 401
        ``INVALID_TOKEN``.
    """


@hookspec(firstresult=True)
def libervia_rate_limiter(gateway: Gateway) -> RateLimiter | None:
    """Provide the per-tenant rate limiter.

    Called: once at start-up; the first non-None answer wins. The ``rate_limiter`` setting names the plugin.

    Args:
        gateway: the gateway being started (storage and registry are open).

    Returns:
        A :class:`libervia.ratelimit.RateLimiter`, or None. With no limiter, requests are not rate limited. The
        limiter must be smooth, must not charge rejected requests, and, if the deployment runs several gateway
        processes, must share its state between them (``libervia.testing.contracts.ratelimit``). ``hit`` is a
        coroutine; a limiter that decides without waiting for anything may also define a plain
        ``hit_now(key, limit_per_minute)`` returning the same decision, which the host then calls on every
        request instead (no coroutine per request), as the embedded limiter does. A limiter whose every decision
        costs a round trip to shared state can charge large limits in leases with ``libervia.ratelimit.Leases``
        (its docstring says what the limit's guarantee loses), as the embedded limiter does too. A limiter that
        defines ``forget(key)`` (plain or ``async``) is asked to forget a tenant's key when the tenant is purged,
        so that a new tenant of the same id starts with a whole quota, as both built-in limiters do.
    """


@hookspec(firstresult=True)
def libervia_storage(gateway: Gateway) -> Storage | None:
    """Provide the storage holding the tenant registry and the event logs.

    Called: once at start-up, first of the service hooks; the first non-None answer wins and its ``start()`` is
    awaited. Exactly one storage plugin is active: the ``storage`` setting names it.

    Args:
        gateway: the gateway being started (only ``settings`` and ``pm`` are set).

    Returns:
        A :class:`libervia.storage.Storage`, or None (``libervia.testing.contracts.registry`` and
        ``libervia.testing.contracts.eventstore`` say what it must keep).
    """


# --- telemetry -------------------------------------------------------------------------------------------------

@hookspec
def libervia_observe_requests(gateway: Gateway, observations: Sequence[RequestObservation]) -> None:
    """Record finished requests.

    Called: once per turn of the event loop, with every request that finished during that turn, right after the
    responses, before the loop waits for anything else; every plugin's implementation is called. Synchronous:
    keep it cheap (update in-memory counters).

    Args:
        gateway: the running gateway.
        observations: the finished requests, each a :class:`libervia.telemetry.RequestObservation` with method,
            route template (never a raw path), status, duration in ms and registered tenant id (or None).

    Returns:
        Nothing.
    """


@hookspec
def libervia_count_event(gateway: Gateway, name: str, labels: dict[str, str], value: float) -> None:
    """Count a named event.

    Called: synchronously, where the event happens; every plugin's implementation is called. Cheap, like
    ``libervia_observe_requests``.

    Args:
        gateway: the running gateway.
        name: one of the names in :mod:`libervia.telemetry`: ``auth_failure`` (labels ``reason``,
            ``tenant_id``), ``tenant_conflict`` (``tenant_id``), ``rate_limited`` (``tenant_id``),
            ``eventlog_append`` (``tenant_id``).
        labels: label values; a ``tenant_id`` label is always a registered tenant's id or ``unknown``.
        value: how much to add (1, or the number of events appended).

    Returns:
        Nothing.
    """


@hookspec(firstresult=True)
def libervia_render_metrics(
    gateway: Gateway, fmt: Literal["prometheus", "json"], tenant_id: str | None
) -> tuple[str, bytes] | Awaitable[tuple[str, bytes] | None] | None:
    """Render the metrics.

    Called: on each request to a metrics route; the first non-None answer wins.

    Args:
        gateway: the running gateway.
        fmt: ``"prometheus"`` (text exposition format) or ``"json"``.
        tenant_id: restrict the output to this tenant's series (``/internal/tenants/{id}/metrics``), or None
            for every series.

    Returns:
        ``(content_type, body)``, or None when you do not render metrics (or not this format). With no renderer
        at all the metrics routes answer 404 ``NOT_FOUND``.
    """


# --- tenant policies -------------------------------------------------------------------------------------------

@hookspec
def libervia_closed_layer_rules(
    gateway: Gateway, tenant_id: str
) -> Sequence[ClosedLayerRule] | RuleSet | Awaitable[Sequence[ClosedLayerRule] | RuleSet | None] | None:
    """Contribute closed-layer rules for a tenant.

    Called: when a tenant's Core starts (not per request); every plugin's implementation is called and the
    answers are merged in registration order.

    Args:
        gateway: the running gateway.
        tenant_id: the tenant whose Core is starting.

    Returns:
        A list of :class:`libervia.core.policy.ClosedLayerRule` added after the rules before it, a
        :class:`libervia.core.policy.RuleSet` with ``replace=True`` to replace the set for that tenant, or None.
        Rules run in order and the first that blocks wins.
    """


@hookspec(firstresult=True)
def libervia_autonomy_policy(
    gateway: Gateway, tenant_id: str
) -> AutonomyPolicy | Awaitable[AutonomyPolicy | None] | None:
    """Provide the policy evaluating agent autonomy requests for a tenant.

    Called: when a tenant's Core starts; the first non-None answer wins (the built-in policy follows DOMAIN.md).

    Args:
        gateway: the running gateway.
        tenant_id: the tenant whose Core is starting.

    Returns:
        A :class:`libervia.core.policy.AutonomyPolicy`, or None (not this tenant, or not this plugin).
    """


@hookspec(firstresult=True)
def libervia_consequence_policy(
    gateway: Gateway, tenant_id: str
) -> ConsequencePolicy | Awaitable[ConsequencePolicy | None] | None:
    """Provide the policy mapping a recorded consequence to an action on the agent's mandate (revoke, suspend,
    degrade, open a review, nothing) for a tenant.

    Called: when a tenant's Core starts.

    Args:
        gateway: the running gateway.
        tenant_id: the tenant whose Core is starting.

    Returns:
        A :class:`libervia.core.policy.ConsequencePolicy`, or None.

    First non-None result wins. Called when a tenant's Core starts.
    """



# --- tenant purge (issue 10.2) -----------------------------------------------------------------------------------

@hookspec
def libervia_tenant_purged(gateway: Gateway, tenant_id: str) -> Awaitable[None] | None:
    """Forget everything kept in memory about a purged tenant.

    Called: on the process that ran ``POST /admin/tenants/{id}/purge``, after the storage removed (or set aside)
    the tenant's data and the registry forgot the tenant, before the purge is answered; and on every other
    gateway process sharing the store as soon as its registry copy sees the tenant gone: once per process, so
    a store shared by several processes runs it several times for one purge (make it idempotent). Every
    plugin's implementation is called, even after another one raised: a failure is logged (the purge still
    succeeds) and a wrapper around this hook sees the first failure at its ``yield``. Drop metric series labelled
    with the id, caches keyed by it, anything else about it: the id may be created again from genesis, and nothing
    of the old tenant may be reachable through the new one.

    Args:
        gateway: the running gateway.
        tenant_id: the purged tenant's id (already validated and lower-cased).

    Returns:
        Nothing (or an awaitable that the host awaits).
    """
