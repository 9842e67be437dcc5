"""10.1: requests aiohttp's parser refuses get the contract's JSON error, a request id, an access line and a metric,
and no secret reaches the answer or the process output (on the old code: text/plain echoing the header line, a
traceback on stdout, ``Server: Python/… aiohttp/…``)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.edge.output_checks import assert_clean_output
from tests.edge.rawhttp import exchange
from tests.gateway_process import GatewayProcess


def hostile_requests(token: str) -> dict[str, bytes]:
    auth = f"Authorization: Bearer {token}".encode()
    start = b"GET /admin/tenants HTTP/1.1\r\nHost: x\r\n"
    post = b"POST /admin/tenants HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    return {
        "control character after the token": start + auth + b"\x01\r\n\r\n",
        "header over the limit": start + auth + b"A" * 17000 + b"\r\n\r\n",
        "invalid header name": start + b"Auth orization: Bearer " + token.encode() + b"\r\n\r\n",
        "bare CR in a header": start + auth + b"\rX-Other: 1\r\n\r\n",
        "URL over 8190 bytes": b"GET /" + b"a" * 9000 + b"?t=" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "too many headers": start + auth + b"\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
        "negative Content-Length": post + b"Content-Length: -1\r\n\r\n",
        "Content-Length with Transfer-Encoding": post + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 b"0\r\n\r\n",
        "bad chunk size": post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        "unknown method": b"BR@W /admin/tenants HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n\r\n",
        "CONNECT": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" + auth + b"\r\n\r\n",
        "unsupported Content-Encoding": post + b"Content-Encoding: snappy\r\nContent-Length: 2\r\n\r\n{}",
    }


async def test_parser_rejections_answer_json_with_request_id_log_and_metric(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("edge-one")
    key = await gateway.create_key("edge-one", "tenant_admin")
    cases = {**hostile_requests(gateway.admin_token),
             **{f"{name} (tenant key)": data for name, data in hostile_requests(key).items()}}
    for name, data in cases.items():
        response = await asyncio.to_thread(exchange, gateway.port, data)
        assert response is not None, name
        assert 400 <= response.status < 500, (name, response.raw[:300])
        assert response.headers["content-type"].startswith("application/json"), name
        body = response.json()
        assert set(body) >= {"error", "code", "message", "request_id"}, name
        assert response.headers["x-request-id"] == body["request_id"], name
        assert "aiohttp" not in response.headers.get("server", "") and "Python" not in response.headers.get(
            "server", ""), name
        for secret in (gateway.admin_token, key):
            assert secret.encode() not in response.raw, name
    status, _, metrics = await gateway.request("GET", "/internal/metrics", gateway.admin_token)
    assert status == 200
    assert 'route="unparsed"' in metrics, "parser rejections are counted in the request metrics"
    assert gateway.stop() == 0
    lines = assert_clean_output(gateway, [key])
    access = [line for line in lines if line.get("route") == "unparsed"]
    # every rejection that never reached a route has its own access line with its request id
    assert len(access) >= 18, len(access)
    assert all(line["statusCode"] < 500 and line["requestId"] for line in access)
    assert not [line for line in lines if line["level"] == "error"], "client mistakes are not logged as errors"
