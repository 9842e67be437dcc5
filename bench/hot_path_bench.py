"""What each step of the request pipeline costs, in-process, per request (issue 11.3).

    python bench/hot_path_bench.py [--samples 200000]

Each step is timed alone on the same inputs a key-authenticated ``GET /api/v1/eventlog/status`` carries, so the
table says where a request's microseconds go and what caching a step could save. Then the whole pipeline (the
request scope and the route's steps and handler, with the access line and the telemetry observation flushed as
the event loop would) is timed on real routes of an in-process gateway, as process CPU per request. The whole
request's server CPU (from ``bench/table_bench.py``) is the reference: what neither lists is aiohttp (parsing,
routing, writing the response) and the event loop.

Nothing here caches an authorisation decision: the key lookup by hash runs per request, so a revoked key is
refused by the next request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.telemetry_bench import telemetry_gateway
from libervia.clock import now_iso
from libervia.context import Principal
from libervia.hookcalls import FirstResultCall, call_first
from libervia.jsonlog import AccessLog, LineWriter, access_log
from libervia.pipeline.authorization import authorise
from libervia.pipeline.tenancy import checked_tenant_id
from libervia.plugin_manager import new_plugin_manager
from libervia.responses import json_response
from libervia.routing import Access, Role
from libervia.schemas import compile_schema, problems
from libervia.telemetry import RequestObservation
from libervia.tenants.ids import parse_tenant_id
from libervia.tenants.keys import TokenHasher, new_token, token_hash
from libervia_plugins import auth_tenant_keys
from libervia_plugins.ratelimit_memory import MemoryRateLimiter

PEPPER = "bench-pepper-" + "p" * 40


def per_call_us(func: Callable[[], Any], samples: int) -> float:
    func()
    began = time.perf_counter()
    for _ in range(samples):
        func()
    return (time.perf_counter() - began) / samples * 1e6


def per_call_async_us(func: Callable[[], Any], samples: int) -> float:
    """Like :func:`per_call_us` for a coroutine function that never suspends (driven without an event loop)."""
    def drive() -> None:
        coroutine = func()
        try:
            coroutine.send(None)
        except StopIteration:
            pass
    return per_call_us(drive, samples)


def steps(samples: int) -> list[tuple[str, float]]:
    token = new_token()
    digest = token_hash(PEPPER, token)
    hasher = TokenHasher(PEPPER)
    auth_pm = new_plugin_manager()
    auth_pm.register(auth_tenant_keys, name="auth_tenant_keys")

    class Registry:
        def match_token(self, _token: str) -> Any:
            return None

    class AuthGateway:
        registry = Registry()

    prepared = FirstResultCall(auth_pm.hook.libervia_authenticate)
    auth_args = {"gateway": AuthGateway(), "request": None, "token": token}
    by_hash = {digest: ("tenant", "key_1")}
    principal = Principal(Role.PUBLIC, "tenant", "key_1")
    pm, gateway = telemetry_gateway()
    batch = [RequestObservation("GET", "/api/v1/eventlog/status", 200, 0.4, None)] * 32
    log = AccessLog()
    log.writer = LineWriter(io.TextIOWrapper(io.BytesIO()))  # type: ignore[arg-type]
    fields = {"time": "", "level": "info", "msg": "GET /api/v1/eventlog/status 200", "requestId": "req_0",
              "method": "GET", "url": "/api/v1/eventlog/status", "route": "/api/v1/eventlog/status",
              "statusCode": 200, "responseTimeMs": 0.4, "tenantId": "tenant", "remoteAddr": "127.0.0.1",
              "code": None}
    status_body = {"tenantId": "tenant", "head": {"seq": 1234, "hash": "ab" * 32, "ts": now_iso()},
                   "checkpoint": {"seq": 1000}, "valid": True}
    decision = compile_schema("requests/core_decisao")
    query = compile_schema("requests/query_page")
    from tests.core import bodies
    body = bodies.decisao()
    limiter = MemoryRateLimiter()

    def limiter_hit() -> None:
        coroutine = limiter.hit("tenant:tenant", 10_000_000)
        try:
            coroutine.send(None)
        except StopIteration:
            pass

    def log_line() -> None:
        log.write(dict(fields))
        log._pending.clear()

    return [
        ("HMAC of the token (token_hash, keyed per call)", per_call_us(lambda: token_hash(PEPPER, token), samples)),
        ("HMAC of the token (TokenHasher, keyed once)", per_call_us(lambda: hasher(token), samples)),
        ("key lookup by hash (dict)", per_call_us(lambda: by_hash.get(digest), samples)),
        ("authenticate hook (call_first, general path)",
         per_call_async_us(lambda: call_first(auth_pm.hook.libervia_authenticate, **auth_args), samples)),
        ("authenticate hook (FirstResultCall, prepared)", per_call_async_us(lambda: prepared(**auth_args), samples)),
        ("tenant id check (parse_tenant_id)", per_call_us(lambda: parse_tenant_id("tenant"), samples)),
        ("tenant id check (checked_tenant_id, remembered)", per_call_us(lambda: checked_tenant_id("tenant"), samples)),
        ("role table (authorise)", per_call_us(lambda: authorise(Access.TENANT_API, principal, "tenant"), samples)),
        ("rate limiter hit (memory GCRA)", per_call_us(limiter_hit, samples)),
        ("telemetry: observe one request (batched)",
         per_call_us(lambda: pm.hook.libervia_observe_requests(gateway=gateway, observations=batch), samples // 32)
         / 32),
        ("access log line (orjson + buffer)", per_call_us(log_line, samples)),
        ("timestamp (now_iso)", per_call_us(now_iso, samples)),
        ("response encoding (json_response)", per_call_us(lambda: json_response(status_body), samples)),
        ("validate a query (compiled)", per_call_us(lambda: query.validate({"limit": 10}), samples)),
        ("validate a decision body (compiled)", per_call_us(lambda: decision.validate(body), samples // 10)),
        ("validate a decision body (jsonschema, before)",
         per_call_us(lambda: problems(body, decision.schema), samples // 100)),
    ]


async def pipeline(samples: int) -> list[tuple[str, float]]:
    """Process CPU per request through a route's whole pipeline on an in-process gateway (best of five runs).

    The route's handler is called with one request object again and again, as aiohttp would call it once the
    request is parsed and routed; every 20 requests the loop gets a turn, as under load, so the access lines and
    the telemetry observations are flushed in batches the way they are in production."""
    from aiohttp.test_utils import make_mocked_request

    from libervia.testing import GatewayHarness

    with tempfile.TemporaryDirectory() as tmp:
        async with GatewayHarness(Path(tmp) / "data", {"log_level": "info"}) as gateway:
            access_log.writer = LineWriter(io.TextIOWrapper(io.BytesIO()))  # type: ignore[arg-type]
            unlimited = await gateway.create_tenant("unlimited", quotas={"rateLimitRpm": 0})
            limited = await gateway.create_tenant("limited", quotas={"rateLimitRpm": 10_000_000})
            app = gateway.client.server.app
            routes = [
                ("GET /health", "/health", {}),
                ("GET /api/v1/eventlog/status (key, rate limit 0)", "/api/v1/eventlog/status",
                 {"Authorization": f"Bearer {unlimited.public.token}"}),
                ("GET /api/v1/eventlog/status (key, rate limited)", "/api/v1/eventlog/status",
                 {"Authorization": f"Bearer {limited.public.token}"}),
            ]
            results = []
            for name, path, headers in routes:
                request = make_mocked_request("GET", path, headers=headers, app=app)
                match = await app.router.resolve(request)
                match.add_app(app)
                match.freeze()
                request._match_info = match
                handler = match.handler
                best = float("inf")
                for _ in range(5):
                    began = time.process_time()
                    for index in range(samples):
                        response = await handler(request)
                        if index % 20 == 19:
                            await asyncio.sleep(0)
                    best = min(best, time.process_time() - began)
                    assert response.status == 200, response
                results.append((name, best / samples * 1e6))
            return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200_000)
    args = parser.parse_args()
    print("in-process cost of each pipeline step, microseconds per request")
    for name, cost in steps(args.samples):
        print(f"  {name:<48} {cost:8.2f} us")
    print("whole pipeline in-process (scope, steps, handler, access line, telemetry), CPU microseconds per request")
    for name, cost in asyncio.run(pipeline(max(1000, args.samples // 20))):
        print(f"  {name:<48} {cost:8.2f} us")


if __name__ == "__main__":
    main()
