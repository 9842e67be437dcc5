"""The contract every :class:`libervia.ratelimit.RateLimiter` must keep, driven by a fake clock.

Use it by subclassing :class:`RateLimiterContract` in a ``test_*.py`` module and providing the fixture
``make_limiter``: an async callable ``(clock) -> RateLimiter`` that builds a limiter reading time from ``clock``
(seconds, a float), and closes what it built when the test ends.

What the contract asks (API.md section 4):

* a fresh key accepts exactly ``limit`` requests at once, then rejects (a client idle for a minute may spend
  its minute at once, never more);
* smooth: in any interval of ``w`` seconds at most ``floor(limit * (w + 60) / 60)`` requests pass (the burst
  plus the steady rate), so no second burst opens at a minute boundary, and the long-run rate is ``limit`` per
  minute within 5 %;
* ``retry_after_s`` and ``reset_s`` are exact: waiting them is enough and necessary;
* a rejected request consumes nothing;
* keys are independent, and concurrent hits on one key never pass more than the limit;
* ``limit_per_minute`` is at least 1. ``0`` means "unlimited" and is handled by the host, which then does not
  call the limiter at all; a limiter refuses 0 with ``ValueError`` so that a host bug cannot silently turn
  "unlimited" into "nothing allowed" (or the reverse).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable

import pytest
import pytest_asyncio

from libervia.ratelimit import RateDecision, RateLimiter

# Epoch-sized, so that implementations storing absolute time stamps meet realistic float precision.
START = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand. Call it to read the time in seconds."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeLimiter = Callable[[FakeClock], Awaitable[RateLimiter]]


def window_bound(limit: int, window_s: float) -> int:
    """Most requests a smooth limiter may accept within ``window_s`` seconds: burst plus refill."""
    return math.floor(limit * (window_s + 60.0) / 60.0 + 1e-9)


async def spend(limiter: RateLimiter, key: str, limit: int, attempts: int) -> list[RateDecision]:
    return [await limiter.hit(key, limit) for _ in range(attempts)]


def accepted(decisions: list[RateDecision]) -> int:
    return sum(decision.allowed for decision in decisions)


class RateLimiterContract:
    """Subclass in a test module and provide the ``make_limiter`` fixture."""
    pytestmark = pytest.mark.asyncio


    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest_asyncio.fixture
    async def limiter(self, make_limiter: MakeLimiter, clock: FakeClock) -> RateLimiter:
        return await make_limiter(clock)

    async def test_is_a_rate_limiter(self, limiter: RateLimiter) -> None:
        assert isinstance(limiter, RateLimiter)

    @pytest.mark.parametrize("limit", [1, 7, 60, 1000])
    async def test_fresh_key_allows_exactly_the_limit_at_once(self, limiter: RateLimiter, limit: int) -> None:
        decisions = await spend(limiter, f"tenant:burst-{limit}", limit, limit + 3)
        assert [d.allowed for d in decisions] == [True] * limit + [False] * 3
        assert [d.remaining for d in decisions[:limit]] == list(range(limit - 1, -1, -1))
        assert all(d.limit == limit for d in decisions)
        assert all(d.retry_after_s == 0 for d in decisions[:limit])
        rejected = decisions[limit]
        assert rejected.remaining == 0
        assert rejected.retry_after_s == pytest.approx(60 / limit, abs=1e-3)
        assert rejected.reset_s == pytest.approx(60, abs=1e-3)

    async def test_retry_after_is_enough_and_necessary(self, limiter: RateLimiter, clock: FakeClock) -> None:
        key, limit = "tenant:retry", 12
        await spend(limiter, key, limit, limit)
        clock.advance(1.0)
        rejected = await limiter.hit(key, limit)
        assert not rejected.allowed
        assert rejected.retry_after_s == pytest.approx(60 / limit - 1.0, abs=1e-3)
        clock.advance(rejected.retry_after_s - 0.01)
        assert not (await limiter.hit(key, limit)).allowed
        clock.advance(0.01 + 1e-4)
        passed = await limiter.hit(key, limit)
        assert passed.allowed
        assert passed.remaining == 0

    async def test_reset_brings_the_whole_quota_back(self, limiter: RateLimiter, clock: FakeClock) -> None:
        key, limit = "tenant:reset", 30
        last = (await spend(limiter, key, limit, 10))[-1]
        assert last.reset_s == pytest.approx(10 * 60 / limit, abs=1e-3)
        clock.advance(last.reset_s - 0.01)
        assert (await limiter.hit(key, limit)).remaining < limit - 1
        clock.advance(60.0)  # the hit above was accepted: wait a whole minute more
        decisions = await spend(limiter, key, limit, limit + 1)
        assert accepted(decisions) == limit

    async def test_rejected_requests_consume_nothing(self, limiter: RateLimiter, clock: FakeClock) -> None:
        limit, interval = 60, 1.0
        hammered, quiet = "tenant:hammered", "tenant:quiet"
        await spend(limiter, hammered, limit, limit)
        await spend(limiter, quiet, limit, limit)
        # 500 rejected attempts spread over one emission interval on one key, none on the other.
        for _ in range(500):
            assert not (await limiter.hit(hammered, limit)).allowed
            clock.advance(interval / 501)
        clock.advance(interval / 501 + 1e-4)
        # Both keys got back exactly one request: the rejections cost nothing.
        for key in (hammered, quiet):
            first, second = await spend(limiter, key, limit, 2)
            assert (first.allowed, second.allowed) == (True, False)
        clock.advance(60.0)
        assert accepted(await spend(limiter, hammered, limit, limit + 5)) == limit

    @pytest.mark.parametrize("offset", [0.0, 20.0, 59.9])
    async def test_no_second_burst_at_a_minute_boundary(self, limiter: RateLimiter, clock: FakeClock,
                                                        offset: float) -> None:
        limit = 60
        key = f"tenant:edge-{offset}"
        # Spend a few requests early in a minute, then the rest just before the minute turns (a fixed-window
        # limiter reopens a full window there, on the epoch minute or on the key's first request).
        clock.now = math.floor(clock.now / 60) * 60 + 60 + offset
        began = clock.now
        first = accepted(await spend(limiter, key, limit, 5))
        clock.now = math.floor(clock.now / 60) * 60 + 60 - 0.1
        before = accepted(await spend(limiter, key, limit, 2 * limit))
        clock.advance(0.2)
        after = accepted(await spend(limiter, key, limit, 2 * limit))
        assert first == 5
        assert before <= limit
        assert first + before + after <= window_bound(limit, clock.now - began)
        # 0.2 s after the boundary only what flowed back since the previous burst may pass.
        assert after <= 1 + math.floor(limit * 0.2 / 60)

    async def test_every_window_respects_burst_plus_rate(self, limiter: RateLimiter, clock: FakeClock) -> None:
        limit = 30
        key = "tenant:windows"
        rng = random.Random(20251129)  # noqa: S311 (seeded traffic, reproducible)
        times: list[float] = []
        start = clock.now
        # Bursty random traffic well above the limit for five simulated minutes.
        while clock.now - start < 300:
            if rng.random() < 0.05:
                clock.advance(rng.uniform(5, 40))  # an idle spell: quota flows back, then a burst
            for _ in range(rng.randint(1, 8)):
                if (await limiter.hit(key, limit)).allowed:
                    times.append(clock.now)
            clock.advance(rng.expovariate(2.0))
        assert len(times) > limit * 3
        for window in (0.0, 1.0, 10.0, 30.0, 60.0, 120.0):
            worst = max(_count_in_window(times, i, window) for i in range(len(times)))
            assert worst <= window_bound(limit, window), window

    @pytest.mark.parametrize("pattern", ["even", "random"])
    async def test_long_run_rate_within_five_percent(self, limiter: RateLimiter, clock: FakeClock,
                                                     pattern: str) -> None:
        limit, minutes = 60, 10
        key = f"tenant:accuracy-{pattern}"
        rng = random.Random(7)  # noqa: S311 (seeded traffic, reproducible)
        start = clock.now
        per_minute = [0] * minutes
        while clock.now - start < minutes * 60:
            if (await limiter.hit(key, limit)).allowed:
                per_minute[int((clock.now - start) // 60)] += 1
            # four times the allowed rate, evenly spaced or as a Poisson stream
            clock.advance(60 / limit / 4 if pattern == "even" else rng.expovariate(limit * 4 / 60))
        steady = sum(per_minute[1:])  # the first minute also holds the initial burst
        assert abs(steady - limit * (minutes - 1)) <= 0.05 * limit * (minutes - 1), per_minute
        assert sum(per_minute) <= limit * (minutes + 1)

    async def test_keys_are_independent(self, limiter: RateLimiter) -> None:
        limit = 10
        assert accepted(await spend(limiter, "tenant:a", limit, limit + 5)) == limit
        assert accepted(await spend(limiter, "tenant:b", limit, limit + 5)) == limit
        assert accepted(await spend(limiter, "tenant:c", limit, 1)) == 1
        assert not (await limiter.hit("tenant:a", limit)).allowed

    async def test_concurrent_hits_never_exceed_the_limit(self, limiter: RateLimiter, clock: FakeClock) -> None:
        limit = 50
        decisions = await asyncio.gather(*(limiter.hit("tenant:crowd", limit) for _ in range(limit * 5)))
        assert accepted(list(decisions)) == limit
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(limit))
        clock.advance(60 / limit + 1e-4)
        decisions = await asyncio.gather(*(limiter.hit("tenant:crowd", limit) for _ in range(limit)))
        assert accepted(list(decisions)) == 1

    @pytest.mark.parametrize("limit", [0, -1])
    async def test_a_limit_below_one_is_refused(self, limiter: RateLimiter, limit: int) -> None:
        with pytest.raises(ValueError):
            await limiter.hit("tenant:zero", limit)


def _count_in_window(times: list[float], first: int, window: float) -> int:
    """Accepted requests in ``[times[first], times[first] + window]`` (``times`` is sorted)."""
    end = times[first] + window
    count = 0
    for moment in times[first:]:
        if moment > end:
            break
        count += 1
    return count
