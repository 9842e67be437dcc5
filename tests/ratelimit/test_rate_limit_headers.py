"""The rate-limit headers computed from real limiter decisions (API.md section 4)."""

from __future__ import annotations

from libervia.ratelimit_headers import rate_limit_headers, retry_after_seconds
from libervia.testing.contracts.ratelimit import FakeClock
from libervia_plugins.ratelimit_memory import MemoryRateLimiter


async def test_headers_of_an_allowed_request() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    decision = await limiter.hit("tenant:a", 120)
    assert rate_limit_headers(decision) == {
        "X-RateLimit-Limit": "120",
        "X-RateLimit-Remaining": "119",
        "X-RateLimit-Reset": "1",  # 0.5 s until the quota is whole, rounded up
        "RateLimit-Policy": '"tenant";q=120;w=60',
        "RateLimit": '"tenant";r=119;t=1',
    }


async def test_headers_of_a_rejected_request() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(7):
        await limiter.hit("tenant:a", 7)
    clock.advance(0.25)
    decision = await limiter.hit("tenant:a", 7)
    headers = rate_limit_headers(decision)
    assert not decision.allowed
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["RateLimit"] == '"tenant";r=0;t=60'  # 59.75 s rounded up
    assert headers["Retry-After"] == "9"  # 60/7 - 0.25 = 8.32 s rounded up: never early
    assert retry_after_seconds(decision) == 9
    clock.advance(8.33)
    assert (await limiter.hit("tenant:a", 7)).allowed


async def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(6000):
        await limiter.hit("tenant:fast", 6000)
    decision = await limiter.hit("tenant:fast", 6000)
    assert decision.retry_after_s < 0.02
    assert rate_limit_headers(decision)["Retry-After"] == "1"
