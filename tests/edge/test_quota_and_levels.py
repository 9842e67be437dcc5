"""10.5: a tenant over its quota gets 403 QUOTA_EXCEEDED (was 507, a 5xx in every dashboard), logged at warning;
readiness answering 503 while draining is not logged at error."""

from __future__ import annotations

import asyncio
import signal
import urllib.error
import urllib.request
from typing import Any

from tests.core import bodies
from tests.gateway_process import GatewayProcess


async def test_quota_exceeded_is_a_403_with_quota_limit_used(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("quota", quotas={"maxEvents": 2})
    key = await gateway.create_key("quota")
    status = 0
    body: Any = None
    for _ in range(4):
        status, _, body = await gateway.request("POST", "/api/v1/decisoes", key, json=bodies.decisao())
        if status != 201:
            break
    assert (status, body["code"]) == (403, "QUOTA_EXCEEDED"), body
    assert body["details"]["quota"] == "maxEvents" and body["details"]["limit"] == 2
    assert isinstance(body["details"]["used"], int)
    assert gateway.stop() == 0
    line = next(line for line in gateway.log_lines() if line.get("code") == "QUOTA_EXCEEDED")
    assert line["level"] == "warning" and line["statusCode"] == 403


def _ready_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_readiness_503_while_draining_is_not_an_error_line(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({"LIBERVIA_SHUTDOWN_DRAIN_DELAY_S": "3"})
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    status = 200
    for _ in range(50):
        status = await asyncio.to_thread(_ready_status, gateway.url)
        if status == 503:
            break
        await asyncio.sleep(0.05)
    assert status == 503
    assert gateway.proc.wait(40) == 0  # the one SIGTERM already sent
    ready = [line for line in gateway.log_lines() if line.get("route") == "/health/ready" and
             line.get("statusCode") == 503]
    assert ready and all(line["level"] != "error" for line in ready)
