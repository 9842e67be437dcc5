"""10.10: SIGTERM finishes a request whose headers arrived even while its body is still coming (on the old code
the connection was closed without an answer), then the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

from tests.edge.rawhttp import connect, read_response, request_bytes
from tests.gateway_process import GatewayProcess


def _post_across_sigterm(gateway: GatewayProcess) -> tuple[int | None, dict | None]:
    body = json.dumps({"id": "drained", "name": "Drained"}).encode()
    sock = connect(gateway.port, timeout=30)
    head = request_bytes("POST", "/admin/tenants", {"Authorization": f"Bearer {gateway.admin_token}",
                                                    "Content-Type": "application/json",
                                                    "Content-Length": str(len(body))})
    sock.sendall(head + body[:10])
    time.sleep(0.3)
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    sock.sendall(body[10:])
    response = read_response(sock)
    sock.close()
    return (response.status, response.json()) if response else (None, None)


async def test_sigterm_finishes_a_request_whose_body_is_still_arriving(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    status, body = await asyncio.to_thread(_post_across_sigterm, gateway)
    assert status == 201, body
    assert gateway.proc is not None and gateway.proc.wait(40) == 0  # the one SIGTERM already sent
    assert json.loads((gateway.base_dir / "config" / "tenants.json").read_text())["tenants"]["drained"]
