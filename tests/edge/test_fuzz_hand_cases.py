"""A bounded hand-case fuzz over every role: a few thousand hostile requests (malformed headers, bad bytes,
huge and odd JSON, odd query values) against a real gateway. Zero 5xx, and no secret (admin token, keys, pepper)
in any response byte or in anything the process wrote. Seeded, so a failure replays."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from tests.edge.output_checks import assert_clean_output
from tests.edge.rawhttp import parse_response
from tests.gateway_process import PEPPER, REPO_ROOT, GatewayProcess

SEED = 20261201
REQUESTS = 3000
CONCURRENCY = 12

ODD_QUERY_VALUES = ["-1", "0", "201", "1e3", "%EF%BC%91", "%00", "1.5", "", "abc", "99999999999999999999999",
                    "true", "null", "%FF%FE", "1%0D%0AX-Injected:%201", "' OR 1=1 --", "%2e%2e%2f", "NaN"]
ODD_JSON = [
    b"", b"{", b"[]", b"null", b"1", b'"x"', b'{"a":NaN}', b'{"a":1e999}', b'{"a":99999999999999999999999}',
    b'{"id":"x","id":"y"}', b'{"role":"public","role":"tenant_admin"}', b'"\\ud800"', b"\xff\xfe{}",
    b"[" * 3000 + b"]" * 3000, b'{"a":' * 500 + b"1" + b"}" * 500, b'{"\x00":1}', b'{"a":"\\u0000"}',
    b'{"situacao":{"alternativas":[{"descricao":1}]},"protocolo":1}',
]


def _routes() -> list[tuple[str, str]]:
    spec = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    # Readiness answers 503 by design when the machine is unwell (its own test covers it), whatever the request.
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "patch", "delete") and path != "/health/ready"]


def _fill(path: str, rng: random.Random, tenant: str) -> str:
    out = []
    for part in path.split("/"):
        if part.startswith("{"):
            out.append(tenant if part in ("{tenant}", "{id}", "{tenantId}") and rng.random() < 0.8
                       else rng.choice(["x", "..", "%2e%2e", "a" * 300, "ten%FF", "NOT-VALID", "key_zz"]))
        else:
            out.append(part)
    return "/".join(out)


def _request(rng: random.Random, routes: list[tuple[str, str]], tokens: list[str | None], tenant: str) -> bytes:
    method, path = rng.choice(routes)
    target = _fill(path, rng, tenant)
    if rng.random() < 0.5:
        target += "?" + "&".join(f"{rng.choice(['limit', 'offset', 'status', 'fromTs', 'tipo', 'x'])}="
                                 f"{rng.choice(ODD_QUERY_VALUES)}" for _ in range(rng.randint(1, 3)))
    token = rng.choice(tokens)
    headers: list[bytes] = [b"Host: 127.0.0.1", b"Connection: close"]
    if token is not None:
        scheme = rng.choice([b"Bearer ", b"bearer ", b"Basic ", b"Bearer  "])
        headers.append(b"Authorization: " + scheme + token.encode() + rng.choice([b"", b"", b"\x01", b" x", b"\xff"]))
    roll = rng.random()
    if roll < 0.15:
        headers.append(b"X-Bad: " + bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
    elif roll < 0.25:
        headers.append(b"X-Tenant-Id: " + rng.choice([tenant.encode(), b"ten\xff", b"other", b"", b"a" * 60]))
        if rng.random() < 0.3:
            headers.append(b"X-Tenant-Id: " + tenant.encode())
    elif roll < 0.3:
        headers.append(b"X-Long: " + b"v" * rng.choice([8000, 17000, 70000]))
    elif roll < 0.35:
        headers.append(rng.choice([b"Bad Name: 1", b": empty", b"X-A:\rb", b"X-\x00: 1", b"Content-Length: -1",
                                   b"Transfer-Encoding: chunked", b"Content-Encoding: gzip", b"Expect: 100-continue"]))
    elif roll < 0.4:
        headers.append(b"X-Forwarded-For: " + rng.choice([b"1.2.3.4", b"not-an-ip", b"::1, 10.0.0.1", b"\xff"]))
    body = b""
    if method in ("POST", "PATCH") or rng.random() < 0.05:
        if rng.random() < 0.02:
            body = b'{"situacao":{"alternativas":[' + b'{"descricao":1},' * 20000 + b'{}]},"protocolo":1}'
        else:
            body = rng.choice(ODD_JSON)
        if b"Transfer-Encoding: chunked" not in headers:
            headers.append(b"Content-Length: " + str(len(body)).encode())
    if rng.random() < 0.03:
        method = rng.choice(["BREW", "CONNECT", "TRACE", "G\x00T", "PROPFIND"])
    line = f"{method} {target} HTTP/1.1".encode("latin-1", "replace")
    return line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


async def _send(port: int, data: bytes) -> bytes:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except OSError:
        return b""
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), 30)
    except (TimeoutError, ConnectionError):
        return b""
    finally:
        writer.close()


async def test_hostile_requests_never_get_a_5xx_or_a_secret(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    tenant = "fuzz-one"
    await gateway.create_tenant(tenant)
    tenant_admin = await gateway.create_key(tenant, "tenant_admin")
    public = await gateway.create_key(tenant, "public")
    secrets = [gateway.admin_token, tenant_admin, public, PEPPER]
    rng = random.Random(SEED)
    routes = _routes()
    tokens: list[str | None] = [gateway.admin_token, tenant_admin, public, None, "guess-" + "g" * 40]
    requests = [_request(rng, routes, tokens, tenant) for _ in range(REQUESTS)]
    limit = asyncio.Semaphore(CONCURRENCY)
    statuses: dict[int, int] = {}

    async def one(data: bytes) -> None:
        async with limit:
            raw = await _send(gateway.port, data)
        for secret in secrets:
            assert secret.encode() not in raw, f"a secret in the answer to {data[:120]!r}"
        response = parse_response(raw)
        if response is not None:
            statuses[response.status] = statuses.get(response.status, 0) + 1
            assert response.status < 500, (data[:300], raw[:500])
            # Errors are the contract's JSON body; successes and bodiless redirects (the console's /admin/ui) are not.
            assert response.headers.get("content-type", "").startswith("application/json") or \
                response.status < 400, (data[:300], raw[:300])

    await asyncio.gather(*(one(data) for data in requests))
    assert sum(statuses.values()) >= REQUESTS * 0.9, statuses  # nearly every request got an answer
    assert gateway.stop() == 0
    lines = assert_clean_output(gateway, secrets)
    assert not [line for line in lines if (line.get("statusCode") or 0) >= 500]
    assert not [line for line in lines if line["level"] in ("error", "critical")], \
        [line for line in lines if line["level"] in ("error", "critical")][:3]
