"""Rate limiter shared by every gateway process: the GCRA of :mod:`libervia.ratelimit`, kept in Redis.

Each key holds its theoretical arrival time (microseconds) and is read, decided and written by one Lua script,
so concurrent requests from any number of processes or machines are serialised by Redis itself. Time comes from
Redis's ``TIME`` inside the script: gateways on different machines share one clock and their own clock skew
does not matter. Contract tests inject a clock instead; its value is then passed to the script.

Keys are ``<key_prefix><key>`` and expire once their quota is whole again (at most about 61 s), so Redis holds
only the tenants active in the last minute.

When Redis cannot be reached the request is decided by ``on_error``: ``allow`` (fail open, default) or
``deny`` (429 ``RATE_LIMITED`` through the host). The limiter never raises for a Redis failure, so a client
never sees a 5xx because of it; a warning is logged at most once per 10 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from libervia import hookimpl, telemetry
from libervia.ratelimit import Gcra, RateDecision
from libervia.schemas import load_schema
from libervia.storage import CheckResult

if TYPE_CHECKING:
    from libervia.gateway import Gateway

PLUGIN_NAME = "ratelimit_redis"
WARNING_INTERVAL_S = 10.0
# Lua numbers are doubles: epoch microseconds (about 2**51) are still exact integers, nanoseconds would not be.
US_PER_S = 1_000_000

# KEYS[1] key; ARGV[1] emission interval, ARGV[2] window, ARGV[3] now or "" (all integer microseconds).
# Mirrors Gcra.admit. Returns {allowed, tat after the decision, now}; numbers go out as strings because Redis
# would turn a Lua number into a 64-bit integer anyway and "%.0f" writes every digit.
_GCRA_SCRIPT = """
local now
if ARGV[3] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local candidate = tat + interval
if candidate - window > now then
  return {0, string.format("%.0f", tat), string.format("%.0f", now)}
end
redis.call("SET", KEYS[1], string.format("%.0f", candidate), "PX", math.ceil((candidate - now) / 1000) + 1000)
return {1, string.format("%.0f", candidate), string.format("%.0f", now)}
"""

OnError = Literal["allow", "deny"]


class RedisRateLimiter:
    """GCRA limiter whose state lives in Redis; see the module docstring.

    ``clock`` is for tests only: when given, its value (seconds) replaces Redis's ``TIME``. All instances that
    share a key must then share that clock.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "libervia:rl:",
        on_error: OnError = "allow",
        error_backoff_s: float = 1.0,
        clock: Callable[[], float] | None = None,
        on_backend_error: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        # Told the outcome of every decision taken without Redis ("allowed" or "rejected"), for the metric.
        self._on_backend_error = on_backend_error
        self._prefix = key_prefix
        self._on_error = on_error
        self._error_backoff_s = error_backoff_s
        self._clock = clock
        self._script = client.register_script(_GCRA_SCRIPT)
        self._skip_until = 0.0       # monotonic time until which Redis is not tried after a failure
        self._next_warning = 0.0
        self._closed = False

    @classmethod
    def from_config(cls, config: dict[str, Any], clock: Callable[[], float] | None = None,
                    on_backend_error: Callable[[str], None] | None = None) -> RedisRateLimiter:
        """Build a limiter from the validated plugin section (``schemas/plugins/ratelimit_redis``)."""
        # A blocking pool makes a request wait (up to the socket timeout) for a free connection when every one is
        # busy; the default pool raises at once, which under load would decide requests by on_error.
        pool = BlockingConnectionPool.from_url(
            config["url"],
            max_connections=config["max_connections"],
            timeout=config["socket_timeout_s"],
            socket_timeout=config["socket_timeout_s"],
            socket_connect_timeout=config["socket_connect_timeout_s"],
            # One immediate retry heals a pooled connection that Redis closed; more would stack timeouts on
            # the request path, which is what on_error is for.
            retry=Retry(NoBackoff(), 1),
        )
        client = Redis.from_pool(pool)
        return cls(client, key_prefix=config["key_prefix"], on_error=config["on_error"],
                   error_backoff_s=config["error_backoff_s"], clock=clock, on_backend_error=on_backend_error)

    async def hit(self, key: str, limit_per_minute: int) -> RateDecision:
        gcra = Gcra.of(limit_per_minute, US_PER_S)
        if time.monotonic() < self._skip_until:
            return self._fallback(gcra)
        now_arg = "" if self._clock is None else str(round(self._clock() * US_PER_S))
        try:
            allowed, tat, now = await self._script(
                keys=[self._prefix + key], args=[gcra.interval, gcra.window, now_arg])
        except (RedisError, OSError) as exc:  # redis-py's timeouts and refused connections land here
            self._skip_until = time.monotonic() + self._error_backoff_s
            self._warn(exc)
            return self._fallback(gcra)
        return gcra.decision(bool(int(allowed)), int(tat), int(now))

    def _fallback(self, gcra: Gcra) -> RateDecision:
        if self._on_backend_error is not None:
            self._on_backend_error("allowed" if self._on_error == "allow" else "rejected")
        if self._on_error == "allow":
            return gcra.decision(True, gcra.interval, 0)  # as if the key were fresh
        wait = max(1.0, self._error_backoff_s)
        return RateDecision(allowed=False, limit=gcra.limit, remaining=0, reset_s=wait, retry_after_s=wait)

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + WARNING_INTERVAL_S
        verdict = "allowed (fail open)" if self._on_error == "allow" else "rejected (fail closed)"
        logger.warning("rate limiter: Redis unreachable ({}: {}); requests are {} until it answers",
                       type(exc).__name__, exc, verdict)

    async def ping(self) -> CheckResult:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            if self._on_error == "allow":
                # Failing open keeps serving, so pulling every gateway out of the load balancer would turn a
                # rate-limit outage into a full outage.
                return CheckResult(ok=True, detail=f"Redis unreachable, rate limits fail open ({type(exc).__name__})")
            return CheckResult(ok=False, detail=f"Redis unreachable ({type(exc).__name__})")
        return CheckResult(ok=True)

    async def forget(self, key: str) -> None:
        """Drop ``key``'s state (its tenant was purged); if Redis is away the key expires within the minute."""
        try:
            await self._client.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._warn(exc)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema(f"plugins/{PLUGIN_NAME}")


@hookimpl
def libervia_rate_limiter(gateway: Gateway) -> RedisRateLimiter:
    return RedisRateLimiter.from_config(
        gateway.plugin_config(PLUGIN_NAME),
        on_backend_error=lambda outcome: gateway.count(telemetry.RATE_LIMITER_ERROR, outcome=outcome))


@hookimpl
async def libervia_readiness_checks(gateway: Gateway) -> dict[str, CheckResult]:
    limiter = gateway.rate_limiter
    if not isinstance(limiter, RedisRateLimiter):  # loaded, but another limiter was chosen
        return {}
    return {"ratelimit_redis": await limiter.ping()}


@hookimpl
async def libervia_shutdown(gateway: Gateway) -> None:
    limiter = gateway.rate_limiter
    if isinstance(limiter, RedisRateLimiter):
        await limiter.close()
