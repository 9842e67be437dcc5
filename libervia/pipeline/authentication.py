"""Authentication: read the bearer token, throttle brute force, ask the ``libervia_authenticate`` hooks."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from libervia.context import Principal
from libervia.errors import AuthError
from libervia.gateway import Gateway
from libervia.hookcalls import call_first

BEARER_PREFIX = "bearer "


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; any other scheme counts as no token."""
    header = request.headers.get("Authorization", "")
    if len(header) > len(BEARER_PREFIX) and header[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        token = header[len(BEARER_PREFIX):].strip()
        return token or None
    return None


def client_address(request: web.Request, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.remote or "unknown"


class FailureThrottle:
    """Counts invalid tokens per client address in a sliding window; past the limit the address gets 429.

    While an address is throttled every attempt is refused, valid tokens included: answering a valid guess
    differently would keep the brute-force oracle open. Memory is bounded by ``max_addresses``.
    """

    def __init__(self, max_failures: int, window_s: float, *, max_addresses: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0 when it is not throttled)."""
        now = self._clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return times[len(times) - self.max_failures] + self.window_s - now

    def record_failure(self, address: str) -> None:
        now = self._clock()
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            if len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        times.append(now)


async def authenticate(gateway: Gateway, throttle: FailureThrottle, request: web.Request,
                       address: str) -> Principal:
    """The caller's principal, or :class:`AuthError` (401 or 429)."""
    token = bearer_token(request)
    if token is None:
        raise AuthError("MISSING_TOKEN", "Authentication required: send Authorization: Bearer <token>.")
    wait = throttle.retry_after(address)
    if wait > 0:
        seconds = math.ceil(wait)
        raise AuthError("TOO_MANY_AUTH_FAILURES",
                        f"Too many failed authentication attempts from this address; retry in {seconds} s.",
                        status=429, headers={"Retry-After": str(seconds)})
    try:
        principal = await call_first(gateway.pm.hook.libervia_authenticate, gateway=gateway, request=request,
                                     token=token)
    except AuthError as exc:
        if exc.reason == "INVALID_TOKEN":
            throttle.record_failure(address)
        raise
    if principal is None:
        throttle.record_failure(address)
        raise AuthError("INVALID_TOKEN", "The token is not valid.")
    return principal
