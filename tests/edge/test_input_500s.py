"""10.4: inputs that produced 500s (or aiohttp's text/plain 500) now get a 4xx from API.md, counted where it belongs."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from tests.core import bodies
from tests.edge.output_checks import assert_clean_output
from tests.edge.rawhttp import exchange, request_bytes
from tests.gateway_process import GatewayProcess


def auth_failures(metrics_text: str, reason: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("libervia_auth_failures_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_non_ascii_token_is_an_invalid_token_counted_as_an_auth_failure(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    data = b"GET /admin/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    response = await asyncio.to_thread(exchange, gateway.port, data)
    assert response is not None and response.status == 401 and response.json()["code"] == "INVALID_TOKEN"
    _, _, metrics = await gateway.request("GET", "/internal/metrics", gateway.admin_token)
    assert auth_failures(metrics, "INVALID_TOKEN") == 1


async def test_a_tenant_header_with_undecodable_bytes_is_a_json_4xx(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("ten")
    key = await gateway.create_key("ten")
    data = (b"GET /api/v1/eventos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
            + b"\r\nX-Tenant-Id: ten\xff\r\n\r\n")
    response = await asyncio.to_thread(exchange, gateway.port, data)
    assert response is not None and 400 <= response.status < 500
    assert response.json()["code"] in ("TENANT_CONFLICT", "INVALID_TENANT_ID")
    assert response.headers["x-request-id"]
    assert gateway.stop() == 0
    lines = assert_clean_output(gateway, [key])
    assert [line for line in lines if line.get("route") == "/api/v1/eventos" and line["statusCode"] == 400]


async def test_extreme_timestamps_are_refused_not_overflowing(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    admin = gateway.admin_token
    await gateway.create_tenant("clock")
    for route in ("audit/export", "audit/replay"):
        for value in ("0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-23:59"):
            status, _, body = await gateway.request("GET", f"/admin/tenants/clock/{route}?fromTs={value}", admin)
            assert (status, body["code"]) == (400, "VALIDATION_ERROR"), (route, value, body)
    for field, value in (("validUntil", "9999-12-31T23:59:59-23:59"), ("validFrom", "0001-01-01T00:00:00+14:00")):
        status, _, body = await gateway.request("POST", "/admin/tenants/clock/mandates", admin,
                                                json=bodies.mandato(**{field: value}))
        assert 400 <= status < 500 and body["code"] in ("DOMAIN_RULE_VIOLATION", "VALIDATION_ERROR"), body


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("gzt")
    key = await gateway.create_key("gzt")
    for encoding in ("gzip", "deflate"):
        data = request_bytes("POST", "/api/v1/decisoes", {"Authorization": f"Bearer {key}",
                                                          "Content-Encoding": encoding}, b"notgzip")
        response = await asyncio.to_thread(exchange, gateway.port, data)
        assert response is not None and response.status == 400, response and response.raw[:300]
        assert response.json()["code"] == "MALFORMED_REQUEST"
    assert gateway.stop() == 0
    assert not [line for line in assert_clean_output(gateway, [key]) if line["level"] == "error"]


def _upload_then_disconnect(port: int, token: str) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request_bytes("POST", "/api/v1/decisoes", {"Authorization": f"Bearer {token}",
                                                            "Content-Length": "1000"}) + b'{"a":')
    time.sleep(0.5)
    sock.close()


async def test_a_client_that_disconnects_mid_upload_is_a_client_abort_at_info(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("abort")
    key = await gateway.create_key("abort")
    await asyncio.to_thread(_upload_then_disconnect, gateway.port, key)
    # the abort is reported once the connection is gone; a later request proves the gateway moved on
    for _ in range(50):
        _, _, metrics = await gateway.request("GET", "/internal/metrics", gateway.admin_token)
        if 'status="499"' in metrics:
            break
        await asyncio.sleep(0.1)
    assert 'status="499"' in metrics
    assert not [line for line in metrics.splitlines()
                if line.startswith("libervia_http_errors_total{") and 'status="5' in line]
    assert gateway.stop() == 0
    lines = assert_clean_output(gateway, [key])
    aborts = [line for line in lines if line.get("code") == "CLIENT_CLOSED_REQUEST"]
    assert len(aborts) == 1 and aborts[0]["level"] == "info"
    assert not [line for line in lines if line["level"] == "error"]
