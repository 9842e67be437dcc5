"""The rate-limit response headers of API.md section 4, computed from a :class:`RateDecision`.

Two families are sent, with the same numbers:

* the de-facto ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (seconds from now
  until the quota is whole again, not an epoch time stamp);
* the IETF ``RateLimit-Policy`` / ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers-10, Structured
  Field lists): ``RateLimit-Policy: "tenant";q=<limit>;w=60`` and ``RateLimit: "tenant";r=<remaining>;t=<reset>``.

Seconds are rounded up, so a client that waits the advertised time is never early; a rejected request adds
``Retry-After`` (the same rounding, at least 1).
"""

from __future__ import annotations

import functools
import math

from libervia.ratelimit import RateDecision

POLICY_NAME = "tenant"
WINDOW_S = 60


def retry_after_seconds(decision: RateDecision) -> int:
    """Whole seconds to wait before retrying a rejected request: ``Retry-After`` and the body's ``retry_after``."""
    return max(1, math.ceil(decision.retry_after_s))


@functools.lru_cache(maxsize=1024)
def _limit_fields(limit: int) -> tuple[str, str]:
    """The two fields that depend on the limit alone (tenants' limits are few; these are sent on every request)."""
    return str(limit), f'"{POLICY_NAME}";q={limit};w={WINDOW_S}'


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """Headers for a response to a rate-limited route, allowed or not."""
    reset = str(math.ceil(decision.reset_s))
    remaining = str(decision.remaining)
    limit, policy = _limit_fields(decision.limit)
    headers = {
        "X-RateLimit-Limit": limit,
        "X-RateLimit-Remaining": remaining,
        "X-RateLimit-Reset": reset,
        "RateLimit-Policy": policy,
        "RateLimit": f'"{POLICY_NAME}";r={remaining};t={reset}',
    }
    if not decision.allowed:
        headers["Retry-After"] = str(retry_after_seconds(decision))
    return headers
