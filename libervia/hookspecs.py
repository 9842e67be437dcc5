"""Every hook a Libervia plugin can implement. This module is the plugin author's manual.

A plugin is a module (or any object) with functions named after these specs and marked with
``libervia.hookimpl``. It is found in one of three ways:

* built in: the modules of ``libervia_plugins`` (the ``plugins/`` folder) that the host registers itself;
* installed: a distribution that declares an entry point in the ``libervia`` group
  (``[project.entry-points.libervia] myplugin = "my_package.plugin"``);
* listed: a dotted module path in the ``plugins.load`` setting.

Plugins are registered in that order. pluggy calls implementations last-registered-first, so a plugin you
install or list runs before the built-ins and can override any ``firstresult`` hook. A plugin can be kept out with
``plugins.block = ["name"]``. A function whose name starts with ``libervia_`` but matches no spec below stops
start-up (a typo never silently does nothing).

Every hook receives keyword arguments only, and a plugin may accept any subset of them. Hooks marked *may be
awaitable* can return a coroutine instead of a value; the host awaits it. For ``firstresult`` hooks the host
resolves each implementation's result before deciding whether to try the next one, so an ``async def``
implementation that returns ``None`` correctly means "not mine".

The :class:`libervia.gateway.Gateway` passed as ``gateway`` gives access to the validated settings
(``gateway.settings``), your plugin's own validated configuration (``gateway.plugin_config("name")``), the
storage, the tenant registry, the tenant runtimes and the telemetry helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from libervia import PROJECT_NAME

if TYPE_CHECKING:
    from aiohttp import web

    from libervia.context import Principal
    from libervia.gateway import Gateway
    from libervia.ratelimit import RateLimiter
    from libervia.routing import Route
    from libervia.storage import CheckResult, Storage
    from libervia.telemetry import RequestObservation

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- configuration ---------------------------------------------------------------------------------------------

@hookspec
def libervia_config_schema() -> dict[str, Any] | None:
    """Return the JSON Schema (draft 2020-12) of this plugin's settings section, or None if it has none.

    Called once per plugin at start-up, before anything else. The plugin's section is the ``plugin.<name>`` table
    of the settings (``[default.plugin.ratelimit_redis]`` in ``settings.toml``, or environment variables such as
    ``LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL``). The host validates that section against the schema, fills in the
    schema's ``default`` values, and refuses to start with one line per violation naming the plugin and the JSON
    path. Read the result with ``gateway.plugin_config("<name>")``.

    Built-in plugins keep their schema in ``schemas/plugins/<name>.schema.json``; third-party plugins may return a
    dict built in code or loaded from their own package data.
    """


# --- lifecycle -------------------------------------------------------------------------------------------------

@hookspec
def libervia_startup(gateway: Gateway) -> Any:
    """Called once after settings and plugin configs are validated and storage is open, before serving.

    Open connections, start background tasks, warm caches. May be awaitable. Raising
    :class:`libervia.errors.StartupError` refuses start-up with its lines printed and exit code 2.
    """


@hookspec
def libervia_shutdown(gateway: Gateway) -> Any:
    """Called once on graceful shutdown, after in-flight requests finished (or timed out).

    Flush buffers and close what ``libervia_startup`` opened. May be awaitable. Called in reverse registration
    order, so built-ins (storage) close after the plugins that may still write to them. Exceptions are logged,
    never stop the other plugins' shutdown.
    """


@hookspec
def libervia_readiness_checks(gateway: Gateway) -> dict[str, CheckResult] | Any:
    """Return named readiness checks for ``GET /health/ready``: ``{"redis": CheckResult(ok=True)}``.

    May be awaitable. Any failed check turns readiness into 503 naming it. Keep them cheap: load balancers call
    readiness often.
    """


# --- HTTP ------------------------------------------------------------------------------------------------------

@hookspec
def libervia_routes(gateway: Gateway) -> list[Route]:
    """Return the :class:`libervia.routing.Route` objects this plugin serves.

    Each route names its access group; the host applies authentication, tenant resolution, authorisation, rate
    limiting and schema validation before your handler runs, and renders any :class:`libervia.errors.ApiError`
    you raise as the JSON error body. Return responses built with :func:`libervia.responses.json_response`; a
    handler that streams must build its response with :func:`libervia.responses.stream_response`, which gives it
    the gateway's common headers (request id, security, CORS, rate limit) before anything is sent. Two plugins
    declaring the same method and path stop start-up.
    """


@hookspec(firstresult=True)
def libervia_authenticate(gateway: Gateway, request: web.Request, token: str) -> Principal | None:
    """Decide who presents ``token`` (the part after ``Authorization: Bearer``). Tri-state:

    * return ``None``: not mine, the next plugin is asked;
    * return a :class:`libervia.context.Principal`: accepted, no further plugin is asked;
    * raise :class:`libervia.errors.AuthError`: rejected outright (for example a revoked key).

    If every plugin returns ``None`` the request fails with 401 ``INVALID_TOKEN``. May be awaitable. Compare
    secrets in constant time (``hmac.compare_digest``) and never log the token.
    """


@hookspec(firstresult=True)
def libervia_rate_limiter(gateway: Gateway) -> RateLimiter | None:
    """Return the :class:`libervia.ratelimit.RateLimiter` used for per-tenant quotas, or None.

    Called once at start-up; the first non-None result wins. With no limiter, requests are not rate limited.
    The limiter must be smooth, must not charge rejected requests, and, if the deployment runs several gateway
    processes, must share its state between them.
    """


@hookspec(firstresult=True)
def libervia_storage(gateway: Gateway) -> Storage | None:
    """Return the :class:`libervia.storage.Storage` holding the tenant registry and the event logs.

    Called once at start-up; the first non-None result wins and its ``start()`` is awaited. Exactly one storage
    plugin should be active: the ``storage`` setting names it, and the built-ins not named are not loaded.
    """


# --- telemetry -------------------------------------------------------------------------------------------------

@hookspec
def libervia_observe_requests(gateway: Gateway, observations: Sequence[RequestObservation]) -> None:
    """Called with the requests that finished, each with its route template, status, duration and (registered)
    tenant: once per turn of the event loop, with every request that finished during that turn.

    Batching keeps the per-request cost of telemetry to appending to a list; the call itself comes right after
    the responses, before the loop waits for anything else. Keep it synchronous and cheap (update in-memory
    counters).
    """


@hookspec
def libervia_count_event(gateway: Gateway, name: str, labels: dict[str, str], value: float) -> None:
    """Count a named event. The host emits the names in :mod:`libervia.telemetry`.

    ``auth_failure`` (labels ``reason``, ``tenant_id``), ``tenant_conflict`` (``tenant_id``), ``rate_limited``
    (``tenant_id``) and ``eventlog_append`` (``tenant_id``; ``value`` is the number of events). A ``tenant_id``
    label is always a registered tenant's id or ``unknown``. Synchronous and cheap, like
    ``libervia_observe_requests``.
    """


@hookspec(firstresult=True)
def libervia_render_metrics(gateway: Gateway, fmt: str, tenant_id: str | None) -> tuple[str, bytes] | None:
    """Render the metrics as ``(content_type, body)``; ``fmt`` is ``"prometheus"`` or ``"json"``.

    ``tenant_id`` restricts the output to that tenant's series (``/internal/tenants/{id}/metrics``). Return None
    when you do not render metrics; with no renderer at all the metrics routes answer 404 ``NOT_FOUND``.
    May be awaitable.
    """


# --- tenant policies -------------------------------------------------------------------------------------------

@hookspec
def libervia_closed_layer_rules(gateway: Gateway, tenant_id: str) -> Any:
    """Return closed-layer rules for ``tenant_id`` (a list of :class:`libervia.core.policy.ClosedLayerRule`).

    Every plugin's rules are collected; rules run in order and the first that blocks wins. Return a
    :class:`libervia.core.policy.RuleSet` with ``replace=True`` to replace the built-in set for that tenant
    instead of adding to it. Called when a tenant's Core starts, not per request.
    """


@hookspec(firstresult=True)
def libervia_autonomy_policy(gateway: Gateway, tenant_id: str) -> Any:
    """Return the :class:`libervia.core.policy.AutonomyPolicy` evaluating agent requests for ``tenant_id``.

    First non-None result wins; the built-in policy follows DOMAIN.md. Called when a tenant's Core starts.
    """


@hookspec(firstresult=True)
def libervia_consequence_policy(gateway: Gateway, tenant_id: str) -> Any:
    """Return the :class:`libervia.core.policy.ConsequencePolicy` mapping a recorded consequence to an action
    on the agent's mandate (revoke, suspend, degrade, open a review, nothing) for ``tenant_id``.

    First non-None result wins. Called when a tenant's Core starts.
    """



# --- tenant purge (issue 10.2) -----------------------------------------------------------------------------------

@hookspec
def libervia_tenant_purged(gateway: Gateway, tenant_id: str) -> Any:
    """``tenant_id`` was purged: its data is gone and the id may be created again from genesis.

    Drop everything kept about it in memory (metric series labelled with it, caches keyed by it), so that
    nothing of the old tenant is reachable through the new one. May be a coroutine. Called on the process that
    ran the purge, after the storage removed the data and the registry forgot the tenant.
    """
