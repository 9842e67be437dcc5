"""Authentication: the client address, the bearer token, the brute-force throttle, the ``libervia_authenticate``
hooks."""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from libervia.context import Principal
from libervia.errors import AuthError
from libervia.gateway import Gateway
from libervia.hookcalls import FirstResultCall
from libervia.ratelimit import RateLimiter
from libervia.settings import Settings

BEARER_PREFIX = "bearer "


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; any other scheme counts as no token."""
    header = request.headers.get("Authorization", "")
    if len(header) > len(BEARER_PREFIX) and header[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        token = header[len(BEARER_PREFIX):].strip()
        return token or None
    return None


class ClientAddress:
    """The client's address for logs and limits.

    Without proxies it is the peer. Behind proxies (``auth.trust_forwarded_for``, or a non-empty
    ``auth.trusted_proxies``) it is the right-most ``X-Forwarded-For`` entry that is not a trusted proxy: every
    proxy appends the address it received from, so entries to the left of the last untrusted one are whatever the
    client claimed. ``trust_forwarded_for`` alone trusts the peer (the one proxy in front) and nothing else.
    """

    def __init__(self, trust_forwarded_for: bool, trusted_proxies: list[str]) -> None:
        self.networks = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
        self.trust_peer = trust_forwarded_for
        self.enabled = trust_forwarded_for or bool(self.networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientAddress:
        auth = settings.section("auth")
        return cls(bool(auth.get("trust_forwarded_for")), list(auth.get("trusted_proxies") or []))

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def of(self, request: web.BaseRequest) -> str:
        peer = request.remote or "unknown"
        if not self.enabled or not (self.trust_peer or self._trusted(peer)):
            return peer
        client = peer
        hops = request.headers.getall("X-Forwarded-For", ())
        for entry in reversed([part.strip() for hop in hops for part in hop.split(",")]):
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                break  # not an address a proxy wrote: the client's own text; stop at the last proxy seen
            client = entry
            if not self._trusted(entry):
                break
        return client


class FailureThrottle:
    """Throttles invalid tokens per client address, counting them in the configured rate limiter.

    ``max_failures`` per ``failure_window_s`` becomes a smooth rate of ``max_failures * 60 / failure_window_s``
    per minute on the key ``auth-failures:<address>``; the limiter allows one minute's worth as a burst. Counting
    in the limiter shares the throttle between processes wherever the limiter is shared (Redis, or the embedded
    limiter across workers). Without a limiter (``rate_limiter = ""``) the count is kept in this process.

    Only failures are counted, and a valid credential always authenticates, throttled address or not: keys are
    256-bit random and the admin token at least 32 characters, so there is nothing to guess, and a throttle
    that also refused valid credentials would let one client behind a shared proxy lock everyone out. While an
    address is throttled, a token that cannot be a credential (see :func:`plausible_token`) is refused with 429
    without being hashed; a plausible one is checked, and refused with 429 if it matches nothing.
    """

    def __init__(self, max_failures: int, window_s: float, limiter: RateLimiter | None = None, *,
                 max_addresses: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_per_minute = max(1, math.ceil(max_failures * 60 / window_s))
        self.limiter = limiter
        self.max_addresses = max_addresses
        self._clock = clock
        self._fallback: OrderedDict[str, deque[float]] = OrderedDict()
        self._max_failures = max_failures
        self._window_s = window_s
        # Addresses the limiter refused, until when: lets a malformed token be refused without asking anyone.
        self._throttled: OrderedDict[str, float] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds this process knows ``address`` stays throttled (0 when it knows of no throttle)."""
        until = self._throttled.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._throttled[address]
            return 0.0
        return left

    async def record_failure(self, address: str) -> float:
        """Count one invalid token from ``address``; seconds to wait when that took it over the limit, else 0."""
        if self.limiter is not None:
            decision = await self.limiter.hit(f"auth-failures:{address}", self.limit_per_minute)
            wait = 0.0 if decision.allowed else max(decision.retry_after_s, 1.0)
        else:
            wait = self._count_locally(address)
        if wait > 0:
            self._throttled[address] = self._clock() + wait
            self._throttled.move_to_end(address)
            if len(self._throttled) > self.max_addresses:
                self._throttled.popitem(last=False)
        return wait

    def _count_locally(self, address: str) -> float:
        now = self._clock()
        times = self._fallback.get(address)
        if times is None:
            times = self._fallback[address] = deque(maxlen=self._max_failures)
            if len(self._fallback) > self.max_addresses:
                self._fallback.popitem(last=False)
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if len(times) >= self._max_failures:
            return times[0] + self._window_s - now
        times.append(now)
        return 0.0


# A credential is 32 to 512 printable ASCII characters without spaces: tenant keys are 43 URL-safe base64
# characters and the admin token at least 32 characters. Anything else cannot authenticate.
_PLAUSIBLE_TOKEN = re.compile(r"[!-~]{32,512}")


def plausible_token(token: str) -> bool:
    return _PLAUSIBLE_TOKEN.fullmatch(token) is not None


def _throttled(seconds_left: float) -> AuthError:
    seconds = max(1, math.ceil(seconds_left))
    return AuthError("TOO_MANY_AUTH_FAILURES",
                     f"Too many failed authentication attempts from this address; retry in {seconds} s.",
                     status=429, headers={"Retry-After": str(seconds)})


async def authenticate(gateway: Gateway, throttle: FailureThrottle, request: web.Request, address: str,
                       ask: FirstResultCall) -> Principal:
    """The caller's principal, or :class:`AuthError` (401, or 429 for an invalid token from a throttled address).

    ``ask`` is the prepared ``libervia_authenticate`` call of the gateway's plugin manager (the route steps keep
    one)."""
    token = bearer_token(request)
    if token is None:
        raise AuthError("MISSING_TOKEN", "Authentication required: send Authorization: Bearer <token>.")
    if not token.isascii() or not token.isprintable():
        # Bytes no credential contains (the header may carry any octet): nothing to hash or compare.
        wait = await throttle.record_failure(address)
        raise _throttled(wait) if wait > 0 else AuthError("INVALID_TOKEN", "The token is not valid.")
    known_wait = throttle.retry_after(address)
    if known_wait > 0 and not plausible_token(token):
        raise _throttled(known_wait)
    try:
        asked_at = gateway.registry.copy_version
        principal = await ask(gateway=gateway, request=request, token=token)
        if principal is None:
            # No authenticator knew the token. A key created through another worker or gateway a moment ago is
            # not in this process's registry copy yet: re-read it (concurrent misses share one read), and ask
            # once more only if the copy changed since the first answer. The admin token and known keys never
            # get here; an unknown token costs one version check.
            await gateway.registry.refresh_after_miss()
            if gateway.registry.copy_version != asked_at:
                principal = await ask(gateway=gateway, request=request, token=token)
    except AuthError as exc:
        if exc.reason == "INVALID_TOKEN":
            wait = await throttle.record_failure(address)
            if wait > 0:
                raise _throttled(wait) from None
        raise
    if principal is None:
        wait = await throttle.record_failure(address)
        if wait > 0:
            raise _throttled(wait)
        raise AuthError("INVALID_TOKEN", "The token is not valid.")
    return principal
