"""10.9: ambiguous input is refused, not guessed (on the old code the first X-Tenant-Id won, the last duplicate
JSON key won, big integers became floats, full-width digits and 10^23 offsets were accepted, HEAD was 405)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.edge.rawhttp import exchange, request_bytes
from tests.gateway_process import GatewayProcess


async def test_ambiguous_requests_are_refused(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    admin = gateway.admin_token
    await gateway.create_tenant("amb-one")
    await gateway.create_tenant("amb-two")
    key = await gateway.create_key("amb-one")
    # two X-Tenant-Id headers
    data = (f"GET /api/v1/eventos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "X-Tenant-Id: amb-one\r\nX-Tenant-Id: amb-two\r\n\r\n").encode()
    response = await asyncio.to_thread(exchange, gateway.port, data)
    assert response is not None and response.status == 400 and response.json()["code"] == "TENANT_CONFLICT"
    # duplicate keys in a JSON body
    raw = b'{"role":"public","role":"tenant_admin"}'
    response = await asyncio.to_thread(exchange, gateway.port, request_bytes(
        "POST", "/admin/tenants/amb-one/keys", {"Authorization": f"Bearer {admin}"}, raw))
    assert response is not None and (response.status, response.json()["code"]) == (400, "INVALID_JSON")
    _, _, keys = await gateway.request("GET", "/admin/tenants/amb-one/keys", admin)
    assert [k["role"] for k in keys["keys"]] == ["public"], "no key was created from the ambiguous body"
    # an integer that cannot be kept exactly
    status, _, body = await gateway.request("PATCH", "/admin/tenants/amb-one", admin,
                                            data='{"metadata":{"n":9999999999999999999999999}}',
                                            headers={"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, "INVALID_JSON")
    status, _, tenant = await gateway.request("PATCH", "/admin/tenants/amb-one", admin,
                                              json={"metadata": {"n": 9223372036854775807}})
    assert status == 200 and tenant["metadata"]["n"] == 9223372036854775807
    # query integers: ASCII digits only, and one offset bound everywhere
    for path in ("/admin/tenants?limit=%EF%BC%91", "/api/v1/eventos?limit=%EF%BC%91",
                 "/admin/tenants?offset=100000000000000000000000",
                 "/admin/tenants/amb-one/events?offset=100000000000000000000000",
                 "/api/v1/eventos?offset=100000000000000000000000"):
        status, _, body = await gateway.request("GET", path, key if path.startswith("/api") else admin)
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), path
    # HEAD answers like GET, without a body
    for path, token in (("/health", None), ("/admin/tenants", admin), ("/api/v1/eventos", key)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await asyncio.to_thread(exchange, gateway.port, request_bytes("HEAD", path, headers))
        assert response is not None and response.status == 200 and response.body == b"", path
        assert response.headers["x-request-id"]
