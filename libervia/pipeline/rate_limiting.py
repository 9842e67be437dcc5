"""Per-tenant rate limiting with the limiter a plugin provides (API.md §4)."""

from __future__ import annotations

from aiohttp import web

from libervia import context
from libervia.errors import ApiError
from libervia.gateway import Gateway
from libervia.ratelimit import RateDecision, RateLimiter, tenant_limit_key
from libervia.ratelimit_headers import rate_limit_headers, retry_after_seconds
from libervia.telemetry import RATE_LIMITED


async def apply_rate_limit(gateway: Gateway, limiter: RateLimiter, request: web.Request, tenant_id: str,
                           limit: int) -> None:
    """Charge one request to the tenant; 429 ``RATE_LIMITED`` when over ``quotas.rateLimitRpm`` (0 = unlimited).
    The caller has read ``limit`` (> 0) and the gateway's ``limiter``: unlimited tenants never get here. A limiter
    with ``hit_now`` should be charged through :func:`enforce` instead, without this coroutine.
    """
    enforce(gateway, request, tenant_id, limit, await limiter.hit(tenant_limit_key(tenant_id), limit))


def enforce(gateway: Gateway, request: web.Request, tenant_id: str, limit: int, decision: RateDecision) -> None:
    """Act on the limiter's ``decision`` for one request of the tenant: its headers are kept on the request, so
    that the response, success or error, carries them; 429 ``RATE_LIMITED`` when it was refused."""
    headers = rate_limit_headers(decision)
    context.state(request).rate_limit_headers = headers
    if not decision.allowed:
        gateway.count(RATE_LIMITED, tenant_id=tenant_id)
        raise ApiError(429, "RATE_LIMITED", f"Rate limit of {limit} requests per minute exceeded.",
                       extra={"retry_after": retry_after_seconds(decision)})
