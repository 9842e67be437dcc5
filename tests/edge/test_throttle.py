"""10.6 and 10.7: the brute-force throttle never locks out valid credentials, counts in the rate limiter, and
takes the client address from the right end of X-Forwarded-For; the admin token must be at least 32 characters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.gateway_process import GatewayProcess, base_env


async def _fail(gateway: GatewayProcess, n: int, headers: dict[str, str] | None = None) -> list[int]:
    statuses = []
    for _ in range(n):
        status, _, _ = await gateway.request("GET", "/admin/tenants", "guess-" + os.urandom(16).hex(),
                                             headers=headers)
        statuses.append(status)
    return statuses


async def test_valid_credentials_authenticate_from_a_throttled_address(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({"LIBERVIA_AUTH__MAX_FAILURES": "3"})
    await gateway.create_tenant("thr")
    key = await gateway.create_key("thr")
    statuses = await _fail(gateway, 25)
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    status, headers, body = await gateway.request("GET", "/admin/tenants", "x")  # malformed: refused unhashed
    assert (status, body["code"]) == (429, "TOO_MANY_AUTH_FAILURES") and int(headers["Retry-After"]) >= 1
    status, _, _ = await gateway.request("GET", "/admin/tenants", gateway.admin_token)
    assert status == 200, "the admin token works from a throttled address"
    status, _, _ = await gateway.request("GET", "/api/v1/eventos", key)
    assert status == 200, "a tenant key works from a throttled address"


async def test_the_throttle_is_shared_through_the_redis_limiter(gateway_factory: Any, redis_url: str) -> None:
    prefix = f"libervia-test-{os.urandom(4).hex()}:"
    env = {"LIBERVIA_AUTH__MAX_FAILURES": "4", "LIBERVIA_RATE_LIMITER": "ratelimit_redis",
           "LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL": redis_url, "LIBERVIA_PLUGIN__RATELIMIT_REDIS__KEY_PREFIX": prefix}
    first: GatewayProcess = gateway_factory(env)
    second: GatewayProcess = gateway_factory(env)
    assert await _fail(first, 2) == [401, 401]
    assert await _fail(second, 2) == [401, 401]
    assert await _fail(first, 1) == [429], "the failures seen by the other process count here too"
    status, _, _ = await second.request("GET", "/admin/tenants", second.admin_token)
    assert status == 200


async def test_forwarded_for_is_read_from_the_right(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({"LIBERVIA_AUTH__MAX_FAILURES": "5",
                                               "LIBERVIA_AUTH__TRUST_FORWARDED_FOR": "true"})
    statuses = []
    for n in range(40):
        statuses += await _fail(gateway, 1, {"X-Forwarded-For": f"10.0.0.{n}, 127.0.0.1"})
    assert 429 in statuses, "a spoofed left-most entry does not escape the throttle"
    # With the proxy network trusted, the client is the entry left of it, and logs name it.
    trusted: GatewayProcess = gateway_factory({"LIBERVIA_AUTH__MAX_FAILURES": "5",
                                               "LIBERVIA_AUTH__TRUSTED_PROXIES": '["127.0.0.0/8", "192.168.0.0/16"]'})
    statuses = []
    for n in range(20):
        statuses += await _fail(trusted, 1, {"X-Forwarded-For": f"6.6.6.6, 10.0.0.{n}, 192.168.1.1"})
    assert 429 not in statuses, "each real client has its own count"
    assert trusted.stop() == 0
    addresses = {line["remoteAddr"] for line in trusted.log_lines() if line.get("code") == "INVALID_TOKEN"}
    assert addresses == {f"10.0.0.{n}" for n in range(20)}


def test_an_admin_token_shorter_than_32_characters_stops_start_up(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", 3000)
    env["ADMIN_TOKEN"] = "a" * 31
    result = subprocess.run([sys.executable, "-m", "libervia", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    problem = [line for line in result.stderr.splitlines() if "ADMIN_TOKEN" in line]
    assert len(problem) == 1 and "32" in problem[0] and "a" * 31 not in result.stderr
