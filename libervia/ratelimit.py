"""The rate limiter a ``libervia_rate_limiter`` plugin provides, and the decision it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int            # requests per minute
    remaining: int        # requests that could be made right now without waiting
    reset_s: float        # seconds until the quota is whole again
    retry_after_s: float  # seconds to wait before the next request can pass (0 when allowed)


@runtime_checkable
class RateLimiter(Protocol):
    """Smooth per-key limiter (GCRA or sliding window: no double burst at window edges).

    ``hit`` counts one request against ``key`` if and only if it is allowed: a rejected request consumes
    nothing. Several gateway processes sharing a backend must enforce one limit between them.
    """

    async def hit(self, key: str, limit_per_minute: int) -> RateDecision: ...

    async def close(self) -> None: ...
