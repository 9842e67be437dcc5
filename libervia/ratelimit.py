"""The rate limiter a ``libervia_rate_limiter`` plugin provides, the decision it returns, and the GCRA both
built-in limiters decide with (so the embedded and the Redis limiter cannot drift apart)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

PERIOD_S = 60
NS_PER_S = 1_000_000_000


class RateDecision(NamedTuple):
    """One request's outcome. (A named tuple: one is built on every rate-limited request, and a frozen
    dataclass's constructor cost three times as much.)"""

    allowed: bool
    limit: int            # requests per minute
    remaining: int        # requests that could be made right now without waiting
    reset_s: float        # seconds until the quota is whole again
    retry_after_s: float  # seconds to wait before the next request can pass (0 when allowed)


def tenant_limit_key(tenant_id: str) -> str:
    """The limiter key of a tenant's requests (the host asks the limiter to forget it when the tenant is
    purged)."""
    return f"tenant:{tenant_id}"


@runtime_checkable
class RateLimiter(Protocol):
    """Smooth per-key limiter (GCRA or sliding window: no double burst at window edges).

    ``hit`` counts one request against ``key`` if and only if it is allowed: a rejected request consumes
    nothing. Several gateway processes sharing a backend must enforce one limit between them.

    A limiter that decides without waiting for anything (local state) may also define
    ``hit_now(key, limit_per_minute) -> RateDecision``, the same decision as a plain call: the host then charges
    every request through it and never awaits ``hit``, which saves a coroutine per request.

    A limiter may also define ``forget(key)`` (plain or ``async``): the host calls it with
    :func:`tenant_limit_key` when a tenant is purged, so that a new tenant of the same id starts with a whole
    quota. It must not raise for a backend that is away (the key then expires by itself).
    """

    async def hit(self, key: str, limit_per_minute: int) -> RateDecision: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Gcra:
    """The GCRA of one limit, on integer time stamps (``ticks_per_s`` ticks per second).

    Integer arithmetic keeps decisions exact: float seconds at epoch magnitude lose a few hundred nanoseconds
    per addition, enough to refuse the last request of a burst. The emission interval is ``60 / limit`` seconds
    rounded to the nearest tick, and the window is ``limit`` whole intervals (60 s give or take ``limit / 2``
    ticks), so a burst is exactly ``limit`` for every limit. The rounding moves the long-run rate by at most
    ``limit / (120 * ticks_per_s)`` relative: nothing in nanoseconds, 0.08 % at 100,000 requests per minute in
    microseconds (the Redis limiter's unit).
    """

    limit: int
    ticks_per_s: int = NS_PER_S

    def __post_init__(self) -> None:
        # 0 means "unlimited" and is the host's business: it must not call the limiter at all.
        if self.limit < 1:
            raise ValueError(f"limit_per_minute must be >= 1 (0 = unlimited is handled by the host), got {self.limit}")

    @functools.cached_property
    def interval(self) -> int:
        return max(1, round(PERIOD_S * self.ticks_per_s / self.limit))

    @functools.cached_property
    def window(self) -> int:
        """``limit`` intervals: how far ahead of ``now`` the theoretical arrival time may run."""
        return self.limit * self.interval

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def of(limit: int, ticks_per_s: int = NS_PER_S) -> Gcra:
        """A shared instance per limit: tenants' limits are few, and ``hit`` runs on every request."""
        return Gcra(limit, ticks_per_s)

    def admit(self, tat: int | None, now: int) -> tuple[bool, int]:
        """Decide one request; return ``(allowed, tat after the decision)``. ``tat`` None means a fresh key."""
        granted, base = self.grant(tat, now, 1)
        return granted == 1, base + granted * self.interval

    def grant(self, tat: int | None, now: int, wanted: int) -> tuple[int, int]:
        """How many of ``wanted`` consecutive requests the key admits at ``now`` (each as :meth:`admit` would,
        one after the other), and the ``tat`` they start from; the key's ``tat`` after them is
        ``base + granted * interval``."""
        base = now if tat is None or tat < now else tat
        return max(0, min(wanted, (now + self.window - base) // self.interval)), base

    def decision(self, allowed: bool, tat: int, now: int) -> RateDecision:
        """The :class:`RateDecision` for a request decided at ``now`` that left the key at ``tat``."""
        # Runs on every rate-limited request: each attribute is read once, and comparisons stand in for
        # min()/max() calls (half the cost in all).
        ahead = tat - now  # how far the key is "in debt"; 0 = whole quota
        if ahead < 0:
            ahead = 0
        window, interval, limit = self.window, self.interval, self.limit
        remaining = (window - ahead) // interval
        if remaining > limit:
            remaining = limit
        elif remaining < 0:
            remaining = 0
        retry_after = 0 if allowed else max(0, ahead + interval - window)
        return RateDecision(allowed, limit, remaining, ahead / self.ticks_per_s, retry_after / self.ticks_per_s)


# --- leases: a shared limiter's requests taken in advance ---------------------------------------------------------

LEASE_FRACTION = 1000   # a lease is a thousandth of the limit...
LEASE_TTL_S = 1.0       # ...and is spent within a second or dropped


def lease_size(limit_per_minute: int) -> int:
    """How many requests one lease takes for this limit; 0 when a lease would hold fewer than two (the limit is
    then charged request by request)."""
    size = limit_per_minute // LEASE_FRACTION
    return size if size >= 2 else 0


@dataclass(slots=True)
class Lease:
    """Requests this process took from a key's shared state at once and has not spent yet."""

    limit: int
    tat: int       # the key's theoretical arrival time right after the lease was taken
    left: int      # taken, not yet spent
    expires: int   # clock ticks after which the rest is dropped


class Leases:
    """The leases one limiter holds, by key.

    A limiter whose every decision costs a round trip to shared state (a SQLite transaction, a Redis script)
    takes ``lease_size(limit)`` requests at once when the limit is large, and spends them here with no round
    trip, within ``LEASE_TTL_S``; the rest is then dropped, never given back. Each spent request's decision is
    the one the shared state would give after it, the lease's unspent rest counting as not yet taken, so the
    response headers read as they do without leases. What the limiter's guarantee loses: requests a process
    leased and has not spent are out of the others' reach, and in any interval a process may spend up to one
    lease it took just before it; the limits hold within one lease per process (0.1 % of the limit each).
    """

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}

    def spend(self, gcra: Gcra, key: str, now: int) -> RateDecision | None:
        """The decision for one more request from the key's lease, or None when there is no usable one."""
        lease = self._held.get(key)
        if lease is None or lease.left == 0 or now >= lease.expires or lease.limit != gcra.limit:
            return None
        lease.left -= 1
        return self._spent(gcra, lease, now)

    def taken(self, gcra: Gcra, key: str, granted: int, tat: int, now: int) -> RateDecision:
        """Record a lease of ``granted`` requests just taken (``tat`` after them); the decision for the request
        that took it, the first one spent. With nothing granted, the key's lease is dropped and the request
        refused (``tat`` is then the key's, untouched)."""
        if granted < 1:
            self.drop(key)
            return gcra.decision(False, tat, now)
        lease = self._held[key] = Lease(gcra.limit, tat, granted - 1, now + round(LEASE_TTL_S * gcra.ticks_per_s))
        return self._spent(gcra, lease, now)

    @staticmethod
    def _spent(gcra: Gcra, lease: Lease, now: int) -> RateDecision:
        # As the shared state would decide it, with the lease's unspent rest not taken yet.
        return gcra.decision(True, lease.tat - lease.left * gcra.interval, now)

    def drop(self, key: str) -> None:
        self._held.pop(key, None)

    def prune(self, now: int) -> None:
        """Forget the leases that have run out (their keys may never come back)."""
        self._held = {key: lease for key, lease in self._held.items() if lease.expires > now}
