"""What each step of the request pipeline costs, in-process, per request (issue 11.3).

    python bench/hot_path_bench.py [--samples 200000]

Each step is timed alone on the same inputs a key-authenticated ``GET /api/v1/eventlog/status`` carries, so the
table says where a request's microseconds go and what caching a step could save. The whole request's server CPU
(from ``bench/table_bench.py``) is the reference: what is not listed here is aiohttp and the event loop.

Nothing here caches an authorisation decision: the key lookup by hash runs per request, so a revoked key is
refused by the next request.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.telemetry_bench import telemetry_gateway
from libervia.clock import now_iso
from libervia.context import Principal
from libervia.jsonlog import AccessLog, LineWriter
from libervia.pipeline.authorization import authorise
from libervia.responses import json_response
from libervia.routing import Access, Role
from libervia.schemas import compile_schema, problems
from libervia.telemetry import RequestObservation
from libervia.tenants.keys import new_token, token_hash
from libervia_plugins.ratelimit_memory import MemoryRateLimiter

PEPPER = "bench-pepper-" + "p" * 40


def per_call_us(func: Callable[[], Any], samples: int) -> float:
    func()
    began = time.perf_counter()
    for _ in range(samples):
        func()
    return (time.perf_counter() - began) / samples * 1e6


def steps(samples: int) -> list[tuple[str, float]]:
    token = new_token()
    digest = token_hash(PEPPER, token)
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
        ("HMAC of the token (token_hash)", per_call_us(lambda: token_hash(PEPPER, token), samples)),
        ("key lookup by hash (dict)", per_call_us(lambda: by_hash.get(digest), samples)),
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200_000)
    args = parser.parse_args()
    print("in-process cost of each pipeline step, microseconds per request")
    for name, cost in steps(args.samples):
        print(f"  {name:<48} {cost:8.2f} us")


if __name__ == "__main__":
    main()
