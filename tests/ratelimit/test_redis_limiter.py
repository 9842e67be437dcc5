"""The Redis GCRA limiter against the rate-limiter contract, shared between "processes", and failing open/closed.

Needs the Redis server on 127.0.0.1:6379 (the ``redis_url`` fixture skips when it is unreachable, except under
CI=true). Each test writes under its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from loguru import logger
from redis.asyncio import Redis

from libervia.ratelimit import RateLimiter
from libervia.schemas import problems
from libervia.testing.contracts.ratelimit import FakeClock, MakeLimiter, RateLimiterContract
from libervia_plugins.ratelimit_redis import RedisRateLimiter

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"libervia-test:{uuid.uuid4().hex}:"
    yield prefix
    admin = Redis.from_url(redis_url)
    keys = [key async for key in admin.scan_iter(match=prefix + "*")]
    if keys:
        await admin.delete(*keys)
    await admin.aclose()


@pytest.fixture
async def limiter_factory(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """Builds limiters, each with its own client and connection pool, as separate processes would have."""
    built: list[RedisRateLimiter] = []

    def build(clock: Callable[[], float] | None = None, **config: object) -> RedisRateLimiter:
        section: dict[str, object] = {"url": redis_url, "key_prefix": redis_prefix, **config}
        assert problems(section, "plugins/ratelimit_redis", fill_defaults=True) == []
        built.append(RedisRateLimiter.from_config(section, clock=clock))
        return built[-1]

    yield build
    for limiter in built:
        await limiter.close()


class TestRedisLimiterContract(RateLimiterContract):
    @pytest.fixture
    def make_limiter(self, limiter_factory: Callable[..., RedisRateLimiter]) -> MakeLimiter:
        async def make(clock: FakeClock) -> RateLimiter:
            return limiter_factory(clock=clock)

        return make


async def test_two_processes_share_one_limit(limiter_factory: Callable[..., RedisRateLimiter]) -> None:
    clock = FakeClock()
    first, second = limiter_factory(clock=clock), limiter_factory(clock=clock)
    limit = 40
    decisions = await asyncio.gather(*(
        (first if n % 2 else second).hit("tenant:shared", limit) for n in range(limit * 4)
    ))
    assert sum(d.allowed for d in decisions) == limit
    clock.advance(60 / limit + 1e-4)
    assert (await second.hit("tenant:shared", limit)).allowed
    assert not (await first.hit("tenant:shared", limit)).allowed


async def test_two_processes_share_one_limit_on_redis_time(
        limiter_factory: Callable[..., RedisRateLimiter]) -> None:
    # No injected clock: the script reads Redis's TIME, as in production.
    first, second = limiter_factory(), limiter_factory()
    limit = 30
    began = time.monotonic()
    decisions = await asyncio.gather(*(
        (first if n % 2 else second).hit("tenant:shared-time", limit) for n in range(limit * 4)
    ))
    elapsed = time.monotonic() - began
    passed = sum(d.allowed for d in decisions)
    # The whole burst, plus whatever flowed back while the requests were in flight (nothing on a fast machine).
    assert limit <= passed <= limit + 1 + int(elapsed * limit / 60)


async def test_keys_are_prefixed_and_expire(limiter_factory: Callable[..., RedisRateLimiter],
                                            redis_url: str, redis_prefix: str) -> None:
    limiter = limiter_factory(clock=FakeClock())
    for _ in range(5):
        await limiter.hit("tenant:ttl", 60)
    admin = Redis.from_url(redis_url)
    try:
        keys = [key async for key in admin.scan_iter(match=redis_prefix + "*")]
        assert keys == [f"{redis_prefix}tenant:ttl".encode()]
        ttl_ms = await admin.pttl(keys[0])
        assert 5_000 < ttl_ms <= 6_000  # five intervals of 1 s in debt, plus a second of margin
    finally:
        await admin.aclose()


async def test_readiness_pings_redis(limiter_factory: Callable[..., RedisRateLimiter]) -> None:
    assert (await limiter_factory().ping()).ok


# --- Redis unreachable: these need no server (port 1 on localhost refuses connections) ------------------------

UNREACHABLE = {"url": "redis://:s3cret-pass@127.0.0.1:1/0", "key_prefix": "libervia-test:", "socket_timeout_s": 0.5,
               "socket_connect_timeout_s": 0.5, "on_error": "allow", "error_backoff_s": 1.0, "max_connections": 4}


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    yield messages
    logger.remove(sink)


@pytest.mark.parametrize("on_error", ["allow", "deny"])
async def test_unreachable_redis_fails_open_or_closed(on_error: str, warnings_logged: list[str]) -> None:
    limiter = RedisRateLimiter.from_config({**UNREACHABLE, "on_error": on_error})
    try:
        decisions = [await limiter.hit("tenant:a", 60) for _ in range(20)]
    finally:
        await limiter.close()
    if on_error == "allow":
        assert all(d.allowed for d in decisions)
    else:
        assert not any(d.allowed for d in decisions)
        assert all(d.retry_after_s >= 1 for d in decisions)
    assert len(warnings_logged) == 1
    assert "Redis unreachable" in warnings_logged[0]
    assert "s3cret-pass" not in warnings_logged[0]


@pytest.mark.parametrize(("on_error", "ready"), [("allow", True), ("deny", False)])
async def test_readiness_when_redis_is_unreachable(on_error: str, ready: bool) -> None:
    limiter = RedisRateLimiter.from_config({**UNREACHABLE, "on_error": on_error})
    try:
        check = await limiter.ping()
    finally:
        await limiter.close()
    assert check.ok is ready
    assert "unreachable" in check.detail


async def test_a_forgotten_key_starts_with_a_whole_quota(limiter_factory: Callable[..., RedisRateLimiter]) -> None:
    """A purged tenant's key is dropped, so a tenant created again under its id is not charged its requests."""
    limiter = limiter_factory(clock=FakeClock())
    assert (await limiter.hit("tenant:purged", 1)).allowed
    assert not (await limiter.hit("tenant:purged", 1)).allowed
    await limiter.forget("tenant:purged")
    assert (await limiter.hit("tenant:purged", 1)).allowed
