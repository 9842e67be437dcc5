"""10.8: slow clients are cut off (headers, body, idle keep-alive) and logged, while others are served (on the old
code a connection sending a header byte per second stayed open for more than a minute)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.edge.rawhttp import closed_by_server, connect, read_response, request_bytes
from tests.gateway_process import GatewayProcess

SLOW = {"LIBERVIA_HTTP__HEADER_TIMEOUT_S": "1", "LIBERVIA_HTTP__BODY_TIMEOUT_S": "1",
        "LIBERVIA_HTTP__BODY_MIN_BYTES_PER_S": "1000000", "LIBERVIA_HTTP__KEEPALIVE_TIMEOUT_S": "1"}


def _dribble_headers(port: int) -> tuple[int | None, bool]:
    """Send a request's headers one byte at a time, 0.2 s apart, until the server stops listening."""
    sock = connect(port, timeout=20)
    data = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 200 + b"\r\n\r\n"
    try:
        for byte in data:
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = read_response(sock)
    closed = closed_by_server(sock)
    sock.close()
    return (response.status if response else None), closed


def _slow_body(port: int, token: str) -> tuple[int | None, str | None, bool]:
    sock = connect(port, timeout=20)
    sock.sendall(request_bytes("POST", "/admin/tenants", {"Authorization": f"Bearer {token}",
                                                          "Content-Length": "100"}) + b'{"id":')
    response = read_response(sock)
    closed = closed_by_server(sock)
    sock.close()
    return (response.status if response else None), (response.json()["code"] if response else None), closed


def _idle_after_one_request(port: int) -> bool:
    sock = connect(port, timeout=20)
    sock.sendall(request_bytes("GET", "/health"))
    response = read_response(sock)
    assert response is not None and response.status == 200
    closed = closed_by_server(sock)
    sock.close()
    return closed


async def test_slow_headers_slow_bodies_and_idle_connections_are_closed(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(SLOW)
    slow = [asyncio.to_thread(_dribble_headers, gateway.port) for _ in range(15)]
    bodies = [asyncio.to_thread(_slow_body, gateway.port, gateway.admin_token) for _ in range(3)]
    running = asyncio.gather(*slow, *bodies)
    await asyncio.sleep(0.5)
    status, _, _ = await gateway.request("GET", "/health")
    assert status == 200, "others are served meanwhile"
    results = await running
    for status, closed in results[:15]:
        assert (status, closed) == (408, True)
    for status, code, closed in results[15:]:
        assert (status, code, closed) == (408, "REQUEST_TIMEOUT", True)
    assert await asyncio.to_thread(_idle_after_one_request, gateway.port) is True
    assert gateway.stop() == 0
    timeouts = [line for line in gateway.log_lines() if line.get("code") == "REQUEST_TIMEOUT"]
    assert len([line for line in timeouts if line.get("statusCode") == 408]) == 18
    assert all(line["level"] in ("info", "warning") for line in timeouts)


def test_defaults_are_sane(tmp_path: Any) -> None:
    from libervia.settings import load_settings
    from tests.gateway_process import base_env

    http = load_settings(base_env(tmp_path / "data", 3000)).section("http")
    assert 0 < http["header_timeout_s"] <= 30 and 0 < http["body_timeout_s"] <= 60
    assert 0 < http["keepalive_timeout_s"] <= 120 and http["body_min_bytes_per_s"] >= 1024
