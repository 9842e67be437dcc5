"""The in-memory GCRA limiter against the rate-limiter contract, plus its memory bound."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libervia.ratelimit import NS_PER_S, Gcra, RateDecision, RateLimiter
from libervia.testing.contracts.ratelimit import FakeClock, MakeLimiter, RateLimiterContract
from libervia_plugins.ratelimit_memory import MemoryRateLimiter
from libervia_plugins.ratelimit_redis import US_PER_S


class TestMemoryLimiterContract(RateLimiterContract):
    @pytest.fixture
    async def make_limiter(self) -> AsyncIterator[MakeLimiter]:
        built: list[RateLimiter] = []

        async def make(clock: FakeClock) -> RateLimiter:
            built.append(MemoryRateLimiter(clock=clock))
            return built[-1]

        yield make
        for limiter in built:
            await limiter.close()


async def hit_while_another_process_writes(limiter: MemoryRateLimiter, path: Path) -> RateDecision:
    """A hit while another connection holds the shared file's write lock, as another worker would hold it."""
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        return await limiter.hit("k", 60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_idle_keys_are_pruned() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for n in range(10_000):
        await limiter.hit(f"tenant:t{n}", 60)
    assert len(limiter) == 10_000
    clock.advance(30)
    for _ in range(45):
        await limiter.hit("tenant:recent", 60)
    clock.advance(31)  # every t<n> key is whole again; "recent" is still 14 s in debt
    await limiter.hit("tenant:other", 60)
    assert len(limiter) == 2


async def test_a_pruned_key_starts_with_a_full_quota() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(10):
        await limiter.hit("tenant:a", 10)
    clock.advance(61)
    await limiter.hit("tenant:b", 10)  # triggers the sweep
    decisions = [await limiter.hit("tenant:a", 10) for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]


@given(limit=st.integers(min_value=1, max_value=10_000_000),
       ticks_per_s=st.sampled_from([US_PER_S, NS_PER_S]),
       now=st.integers(min_value=0, max_value=2**52))
def test_gcra_burst_is_exactly_the_limit_and_rate_error_is_bounded(limit: int, ticks_per_s: int, now: int) -> None:
    gcra = Gcra(limit, ticks_per_s)
    # After k requests at one instant the key stands at now + k * interval: the limit-th passes, the next not.
    assert gcra.admit(now + (limit - 1) * gcra.interval, now) == (True, now + limit * gcra.interval)
    assert gcra.admit(now + limit * gcra.interval, now) == (False, now + limit * gcra.interval)
    exact_interval = 60 * ticks_per_s / limit
    assert abs(gcra.interval - exact_interval) / exact_interval <= max(0.5 / exact_interval, 1e-12)


async def test_a_locked_shared_state_fails_open_instead_of_a_500(tmp_path: Path) -> None:
    """Another process holding the shared file's write lock past the busy timeout (or a file gone unusable) must
    not turn every request into a 500: the hit passes and the outcome is reported (on the old code it raised)."""
    path = tmp_path / "ratelimit.sqlite3"
    outcomes: list[str] = []
    limiter = MemoryRateLimiter(path, on_backend_error=outcomes.append)
    assert (await limiter.hit("k", 60)).allowed
    decision = await hit_while_another_process_writes(limiter, path)
    assert decision.allowed and outcomes == ["allowed"]
    assert (await limiter.hit("k", 60)).allowed and outcomes == ["allowed"]  # the file works again
    await limiter.close()


def counting_statements(limiter: MemoryRateLimiter) -> list[str]:
    """Every SQL statement the limiter runs from now on."""
    statements: list[str] = []
    limiter._db.set_trace_callback(statements.append)
    return statements


async def test_a_high_limit_is_charged_in_leases_not_per_request(tmp_path: Path) -> None:
    """One UPSERT on the shared file per request cost a third of a key-authenticated read: a limit of 10,000
    per minute takes ten requests per transaction, and every decision still reads as if charged one by one."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(tmp_path / "ratelimit.sqlite3", clock=clock)
    statements = counting_statements(limiter)
    decisions = [await limiter.hit("tenant:big", 10_000) for _ in range(100)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(9_999, 9_899, -1))
    assert sum(s.startswith("BEGIN") for s in statements) == 10
    await limiter.close()


async def test_leases_never_take_more_than_the_limit_and_strand_at_most_one_lease_per_process(
        tmp_path: Path) -> None:
    """Two processes on one file, hitting one key in turn: the shared state never grants more than the limit,
    and only the leases each holds unspent are lost to the other."""
    clock = FakeClock()
    path = tmp_path / "ratelimit.sqlite3"
    first, second = MemoryRateLimiter(path, clock=clock), MemoryRateLimiter(path, clock=clock)
    limit = 20_000   # leases of 20
    accepted = 0
    for n in range(limit + 100):
        accepted += (await (first if n % 3 else second).hit("tenant:shared", limit)).allowed
    assert limit - 2 * 20 <= accepted <= limit
    # Exhausted for both: neither passes more until time flows back.
    assert not (await first.hit("tenant:shared", limit)).allowed
    assert not (await second.hit("tenant:shared", limit)).allowed
    clock.advance(60 / limit * 25)
    assert (await first.hit("tenant:shared", limit)).allowed
    await first.close()
    await second.close()


async def test_a_lease_not_spent_within_its_time_is_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(tmp_path / "ratelimit.sqlite3", clock=clock)
    statements = counting_statements(limiter)
    await limiter.hit("tenant:idle", 10_000)
    clock.advance(2.0)   # past the lease's second: its nine unspent requests are not used any more
    decision = await limiter.hit("tenant:idle", 10_000)
    assert decision.allowed and sum(s.startswith("BEGIN") for s in statements) == 2
    await limiter.close()


async def test_a_small_limit_is_still_charged_request_by_request(tmp_path: Path) -> None:
    limiter = MemoryRateLimiter(tmp_path / "ratelimit.sqlite3", clock=FakeClock())
    statements = counting_statements(limiter)
    for _ in range(5):
        await limiter.hit("tenant:small", 1_000)
    assert not any(s.startswith("BEGIN") for s in statements) and len(statements) >= 5
    await limiter.close()


async def test_a_sweep_on_a_locked_shared_state_fails_open_too(tmp_path: Path) -> None:
    """The once-a-minute sweep is a statement on the shared file as well: when another process holds its lock,
    the request still passes (on the old code the sweep's error escaped the limiter, a 500)."""
    clock = FakeClock()
    path = tmp_path / "ratelimit.sqlite3"
    outcomes: list[str] = []
    limiter = MemoryRateLimiter(path, clock=clock, on_backend_error=outcomes.append)
    assert (await limiter.hit("k", 60)).allowed
    clock.advance(61)   # the next hit sweeps
    decision = await hit_while_another_process_writes(limiter, path)
    assert decision.allowed and outcomes == ["allowed"]
    await limiter.close()
