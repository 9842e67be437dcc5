"""``GET /health`` (liveness), ``GET /health/ready`` (readiness) and v1's ``GET /metrics`` summary (API.md §5).

Both health documents carry v1's fields beside the gateway's own: ``timestamp`` and ``uptime`` (seconds) on
liveness, ``registry:{loaded, tenantCount}`` and ``runtime:{activeInstances}`` on readiness. ``/metrics`` is v1's
summary, for the global admin only (v1 served tenant counts and memory to anyone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from libervia import __version__, context, hookimpl
from libervia.clock import now_iso
from libervia.gateway import Gateway
from libervia.hookcalls import call_all
from libervia.panel import v1_metrics_summary
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.storage import CheckResult

READINESS_TIMEOUT_S = 2.0


def liveness(gateway: Gateway) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``GET /health`` handler of ``gateway`` (bound to it here: load balancers poll this route constantly,
    and finding the gateway through the request costs more than the rest of the answer)."""

    async def health(request: web.Request) -> web.Response:
        uptime = round(gateway.uptime_s(), 3)
        return json_response({"status": "ok", "version": __version__, "uptime_s": uptime, "uptime": uptime,
                              "timestamp": now_iso()})

    return health


async def _gather_checks(gateway: Gateway) -> dict[str, CheckResult]:
    checks: dict[str, CheckResult] = {
        "process": CheckResult(not gateway.draining, "draining: shutting down" if gateway.draining else "serving"),
        "registry": CheckResult(gateway.registry.loaded, "loaded" if gateway.registry.loaded else "not loaded"),
    }
    checks.update(await gateway.storage.check_ready())
    for extra in await call_all(gateway.pm.hook.libervia_readiness_checks, gateway=gateway):
        checks.update(extra)
    return checks


async def ready(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    try:
        checks = await asyncio.wait_for(_gather_checks(gateway), READINESS_TIMEOUT_S)
    except TimeoutError:
        checks = {"timeout": CheckResult(False, f"readiness checks took longer than {READINESS_TIMEOUT_S} s")}
    body: dict[str, Any] = {
        "status": "ok" if all(c.ok for c in checks.values()) else "error",
        "checks": {name: {"ok": c.ok, "detail": c.detail, **c.extra} for name, c in checks.items()},
        "timestamp": now_iso(),
        "registry": {"loaded": gateway.registry.loaded,
                     "tenantCount": sum(gateway.registry.counts_by_status().values())},
        "runtime": {"activeInstances": gateway.runtime.active_count()},
    }
    return json_response(body, status=200 if body["status"] == "ok" else 503)


async def v1_metrics(request: web.Request) -> web.Response:
    return json_response(v1_metrics_summary(context.gateway(request)))


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return [
        Route("GET", "/health", liveness(gateway), Access.OPEN, name="health"),
        Route("GET", "/health/ready", ready, Access.OPEN, name="ready"),
        Route("GET", "/metrics", v1_metrics, Access.GLOBAL_ADMIN, name="metrics.v1"),
    ]
