"""The cross-cutting HTTP rules of API.md §1 and the logs of §9, against a real gateway process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from typing import Any

import aiohttp
import pytest

from tests.gateway_process import ADMIN_TOKEN, PEPPER, GatewayProcess

SLOW_PLUGIN = {"LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.slow_route_plugin"]'}


def assert_error_body(body: Any, status_code: str) -> None:
    assert isinstance(body, dict), body
    assert set(body) >= {"error", "code", "message", "request_id"}
    assert body["code"] == status_code
    assert "Traceback" not in json.dumps(body)


@pytest.fixture(scope="module")
def contract_gateway(tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    base = tmp_path_factory.mktemp("contract") / "data"
    gateway = GatewayProcess(base, {**SLOW_PLUGIN, "LIBERVIA_MAX_BODY_BYTES": "2048",
                                    "CORS_ORIGINS": "https://app.example.com"}).start()
    yield gateway
    gateway.kill()


async def test_unknown_route_is_json_404(contract_gateway: GatewayProcess) -> None:
    status, headers, body = await contract_gateway.request("GET", "/no/such/route")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert_error_body(body, "NOT_FOUND")


async def test_wrong_method_is_405_with_allow(contract_gateway: GatewayProcess) -> None:
    status, headers, body = await contract_gateway.request("DELETE", "/health")
    assert status == 405
    assert "GET" in headers["Allow"]
    assert_error_body(body, "METHOD_NOT_ALLOWED")


async def test_oversized_body_is_413(contract_gateway: GatewayProcess) -> None:
    status, _, body = await contract_gateway.request("POST", "/admin/tenants", ADMIN_TOKEN,
                                                     json={"id": "big-one", "name": "x" * 5000})
    assert status == 413
    assert_error_body(body, "PAYLOAD_TOO_LARGE")


async def test_oversized_chunked_body_is_413(contract_gateway: GatewayProcess) -> None:
    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b"x" * 1024

    async with aiohttp.ClientSession() as session, session.post(
        contract_gateway.url + "/admin/tenants", data=chunks(), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        assert response.status == 413
        assert_error_body(await response.json(), "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("raw", ["{", "not json", '{"id": }', "\xff\xfe"])
async def test_malformed_json_is_400(contract_gateway: GatewayProcess, raw: str) -> None:
    status, _, body = await contract_gateway.request("POST", "/admin/tenants", ADMIN_TOKEN, data=raw.encode("latin-1"),
                                                     headers={"Content-Type": "application/json"})
    assert status == 400
    assert_error_body(body, "INVALID_JSON")


async def test_schema_violation_names_each_path(contract_gateway: GatewayProcess) -> None:
    status, _, body = await contract_gateway.request("POST", "/admin/tenants", ADMIN_TOKEN,
                                                     json={"id": 5, "quotas": {"rateLimitRpm": -1}, "extra": 1})
    assert status == 400
    assert_error_body(body, "VALIDATION_ERROR")
    paths = {d["path"] for d in body["details"]}
    assert {"$", "$.id", "$.quotas.rateLimitRpm"} <= paths


async def test_unexpected_exception_is_500_without_trace(contract_gateway: GatewayProcess) -> None:
    status, headers, body = await contract_gateway.request("GET", "/test/crash")
    assert status == 500
    assert_error_body(body, "INTERNAL_ERROR")
    assert "boom" not in json.dumps(body)
    assert body["request_id"] == headers["X-Request-Id"]
    await asyncio.sleep(0.2)
    line = next(entry for entry in contract_gateway.log_lines() if entry.get("err"))
    assert "boom" in line["err"]["stack"]


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123_X.y", True), ("a" * 64, True), ("a" * 65, False), ("has space", False), ("semi;colon", False),
    ("", False),
])
async def test_request_id_rules(contract_gateway: GatewayProcess, given: str, kept: bool) -> None:
    _, headers, _ = await contract_gateway.request("GET", "/health", headers={"X-Request-Id": given})
    assert (headers["X-Request-Id"] == given) is kept
    assert 1 <= len(headers["X-Request-Id"]) <= 64


async def test_request_id_reaches_the_access_log(contract_gateway: GatewayProcess) -> None:
    await contract_gateway.request("GET", "/no/such/thing", headers={"X-Request-Id": "trace-me-42"})
    await asyncio.sleep(0.2)
    lines = [entry for entry in contract_gateway.log_lines() if entry.get("requestId") == "trace-me-42"]
    assert lines and lines[0]["statusCode"] == 404 and lines[0]["code"] == "NOT_FOUND"


async def test_log_lines_are_json_with_the_contract_keys_and_no_secrets(contract_gateway: GatewayProcess) -> None:
    await contract_gateway.request("POST", "/admin/tenants", ADMIN_TOKEN, json={"id": "log-check", "name": "L"})
    status, _, key = await contract_gateway.request("POST", "/admin/tenants/log-check/keys", ADMIN_TOKEN,
                                                    json={"role": "public"})
    assert status == 201
    await contract_gateway.request("GET", "/api/v1/eventlog/status", key["token"])
    await contract_gateway.request("GET", "/admin/tenants", "wrong-" + key["token"])
    await contract_gateway.request("GET", "/test/crash")
    await asyncio.sleep(0.2)
    text = contract_gateway.log_text()
    for secret in (ADMIN_TOKEN, PEPPER, key["token"]):
        assert secret not in text
    access = [entry for entry in contract_gateway.log_lines() if "statusCode" in entry]
    assert access
    for entry in access:
        assert {"time", "level", "msg", "requestId", "method", "url", "route", "statusCode", "responseTimeMs",
                "tenantId", "remoteAddr", "code"} <= set(entry)
    # The runbook's PROC-003 pipeline: grep 'statusCode":5' | jq -r '.msg'
    fives = [json.loads(line) for line in text.splitlines() if 'statusCode":5' in line]
    assert fives and all(entry["msg"] for entry in fives)
    assert all(line.count("\n") == 0 for line in text.splitlines())


async def test_security_and_cors_headers(contract_gateway: GatewayProcess) -> None:
    _, headers, _ = await contract_gateway.request("GET", "/admin/tenants", ADMIN_TOKEN,
                                                   headers={"Origin": "https://app.example.com"})
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    _, headers, _ = await contract_gateway.request("GET", "/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = await contract_gateway.request(
        "OPTIONS", "/admin/tenants",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]


async def test_sigterm_lets_in_flight_requests_finish(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({**SLOW_PLUGIN, "LIBERVIA_SHUTDOWN_DRAIN_DELAY_S": "0.5"})
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(gateway.url + "/test/slow?s=2"))
        await asyncio.sleep(0.5)
        gateway.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with session.get(gateway.url + "/health/ready") as ready:  # during the drain delay
            assert ready.status == 503
            assert (await ready.json())["checks"]["process"]["ok"] is False
        response = await slow
        assert response.status == 200
        assert (await response.json())["slept"] == 2
    assert await asyncio.to_thread(gateway.proc.wait, 30) == 0
    assert any(entry["msg"] == "shutdown complete" for entry in gateway.log_lines())


async def test_sigint_also_shuts_down_cleanly(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    assert gateway.stop(signal.SIGINT) == 0


async def test_readiness_fails_when_base_dir_is_unwritable(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    status, _, _ = await gateway.request("GET", "/health/ready")
    assert status == 200
    moved = gateway.base_dir.with_name("moved-away")
    gateway.base_dir.rename(moved)
    gateway.base_dir.write_text("the volume is gone; a file sits where the directory was")
    try:
        status, _, body = await gateway.request("GET", "/health/ready")
        assert status == 503
        assert body["status"] == "error" and body["checks"]["storage"]["ok"] is False
        status, _, body = await gateway.request("GET", "/health")
        assert status == 200  # liveness is not readiness
    finally:
        gateway.base_dir.unlink()
        moved.rename(gateway.base_dir)
    status, _, _ = await gateway.request("GET", "/health/ready")
    assert status == 200


async def test_readiness_fails_when_disk_is_short(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({"LIBERVIA_MIN_FREE_DISK_MB": str(10**9)})
    status, _, body = await gateway.request("GET", "/health/ready")
    assert status == 503
    assert body["checks"]["disk"]["ok"] is False


async def test_bare_env_names_are_honoured(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory({"LOG_LEVEL": "warning"}, run=False)
    assert gateway.env["PORT"] == str(gateway.port) and "BASE_DIR" in gateway.env
    gateway.start()
    await gateway.request("GET", "/health")
    await gateway.request("GET", "/nope")
    await asyncio.sleep(0.2)
    levels = {entry["level"] for entry in gateway.log_lines()}
    assert "info" not in levels and "warning" in levels
    assert (gateway.base_dir / "config" / "tenants.json").exists()


async def test_health_shape(gateway_server: GatewayProcess) -> None:
    from libervia import __version__

    status, _, first = await gateway_server.request("GET", "/health")
    assert status == 200 and first == {"status": "ok", "version": __version__, "uptime_s": first["uptime_s"],
                                       "uptime": first["uptime_s"], "timestamp": first["timestamp"]}
    await asyncio.sleep(0.01)
    _, _, second = await gateway_server.request("GET", "/health")
    assert 0 <= first["uptime_s"] < second["uptime_s"]


def test_a_streamed_response_that_fails_midway_is_cut_not_followed_by_an_error_response(
        contract_gateway: GatewayProcess) -> None:
    """The scope used to answer the failure with its JSON error: written inside the chunked body already under
    way, it ended that body with a proper last chunk, so the client read a complete 200 carrying a second HTTP
    response. The connection is cut instead; the log and the metric still count the failure."""
    with socket.create_connection(("127.0.0.1", contract_gateway.port)) as sock:
        sock.sendall(b"GET /test/broken-stream HTTP/1.1\r\nHost: x\r\nX-Request-Id: broken-stream-1\r\n\r\n")
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(65536):   # the server closes the connection
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b'{"line": 1}' in body
    assert b"HTTP/1.1" not in body
    assert not body.endswith(b"0\r\n\r\n")   # no last chunk: the client can tell the body was cut short
    lines = [line for line in contract_gateway.log_lines() if line.get("requestId") == "broken-stream-1"]
    assert [(line["statusCode"], line["code"]) for line in lines if "statusCode" in line] == [(500, "INTERNAL_ERROR")]
