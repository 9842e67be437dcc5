"""``GET /health`` (liveness) and ``GET /health/ready`` (readiness) of API.md §5."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from libervia import __version__, context, hookimpl
from libervia.gateway import Gateway
from libervia.hookcalls import call_all
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.storage import CheckResult

READINESS_TIMEOUT_S = 2.0


async def health(request: web.Request) -> web.Response:
    gateway = context.gateway(request)
    return json_response({"status": "ok", "version": __version__, "uptime_s": round(gateway.uptime_s(), 3)})


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
    }
    return json_response(body, status=200 if body["status"] == "ok" else 503)


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return [
        Route("GET", "/health", health, Access.OPEN, name="health"),
        Route("GET", "/health/ready", ready, Access.OPEN, name="ready"),
    ]
