"""The full role matrix of API.md §2: every route group × every kind of caller, exact status and code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.gateway_process import GatewayProcess

CALLERS = ("global_admin", "own_tenant_admin", "other_tenant_admin", "own_public", "revoked", "garbage", "none")


@dataclass
class World:
    tenant: str
    other: str
    tokens: dict[str, str | None]


@pytest.fixture
async def world(gateway_server: GatewayProcess, unique_id: Any) -> World:
    tenant, other = unique_id("rbac"), unique_id("rbac-o")
    await gateway_server.create_tenant(tenant)
    await gateway_server.create_tenant(other)
    revoked_status, _, revoked = await gateway_server.request(
        "POST", f"/admin/tenants/{tenant}/keys", gateway_server.admin_token, json={"role": "tenant_admin"})
    assert revoked_status == 201
    status, _, _ = await gateway_server.request(
        "POST", f"/admin/tenants/{tenant}/keys/{revoked['keyId']}/revoke", gateway_server.admin_token)
    assert status == 200
    return World(tenant, other, {
        "global_admin": gateway_server.admin_token,
        "own_tenant_admin": await gateway_server.create_key(tenant, "tenant_admin"),
        "other_tenant_admin": await gateway_server.create_key(other, "tenant_admin"),
        "own_public": await gateway_server.create_key(tenant, "public"),
        "revoked": revoked["token"],
        "garbage": "not-a-real-token-" + "x" * 30,
        "none": None,
    })


UNAUTH = {"revoked": (401, "INVALID_TOKEN"), "garbage": (401, "INVALID_TOKEN"), "none": (401, "MISSING_TOKEN")}


def expect(admin: Any, own_ta: Any, other_ta: Any, public: Any) -> dict[str, tuple[int, str | None]]:
    return {"global_admin": admin, "own_tenant_admin": own_ta, "other_tenant_admin": other_ta,
            "own_public": public, **UNAUTH}


OK = (200, None)
CREATED = (201, None)
FORBIDDEN = (403, "INSUFFICIENT_ROLE")
NOT_YOURS = (401, "INVALID_TOKEN")
CONFLICT = (400, "TENANT_CONFLICT")

# (method, path template, body, headers-with-tenant, expected per caller). {t} is the caller's "own" tenant.
MATRIX: list[tuple[str, str, Any, bool, dict[str, tuple[int, str | None]]]] = [
    ("GET", "/health", None, False, {c: OK for c in CALLERS}),
    ("GET", "/health/ready", None, False, {c: OK for c in CALLERS}),
    ("GET", "/api/v1/eventlog/status", None, True, expect(FORBIDDEN, OK, CONFLICT, OK)),
    ("GET", "/api/v1/tenants/{t}/eventos", None, False, expect(FORBIDDEN, OK, CONFLICT, OK)),
    ("GET", "/admin/tenants", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("PATCH", "/admin/tenants/{t}", {"name": "renamed"}, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("GET", "/admin/tenants/{t}", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/tenants/{t}/keys", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("POST", "/admin/tenants/{t}/keys", {"role": "public"}, False, expect(CREATED, CREATED, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/tenants/{t}/audit/verify", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/tenants/{t}/events", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/query/{t}/dashboard", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/query/{t}/mandates", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("GET", "/internal/tenants/{t}/metrics", None, False, expect(OK, OK, NOT_YOURS, FORBIDDEN)),
    ("POST", "/admin/tenants/{t}/mandates",
     {"agentId": "agent-1", "modo": "VIVENCIA_ASSISTIDA", "politicas_permitidas": ["p1"],
      "perfil_risco_maximo": "MODERADO", "limites": [], "requer_humano_se": []},
     False, expect(CREATED, CREATED, NOT_YOURS, FORBIDDEN)),
    ("GET", "/admin/query/tenants", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("GET", "/admin/instances", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("GET", "/admin/metrics", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("GET", "/internal/metrics", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    ("GET", "/internal/health/operational", None, False, expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
]


@pytest.mark.parametrize(("method", "path", "body", "with_header", "expected"), MATRIX,
                         ids=[f"{m} {p}" for m, p, *_ in MATRIX])
async def test_rbac_matrix(gateway_server: GatewayProcess, world: World, method: str, path: str, body: Any,
                           with_header: bool, expected: dict[str, tuple[int, str | None]]) -> None:
    failures = []
    for caller in CALLERS:
        headers = {"X-Tenant-Id": world.tenant} if with_header else {}
        status, _, answer = await gateway_server.request(method, path.format(t=world.tenant), world.tokens[caller],
                                                         headers=headers, json=body)
        want_status, want_code = expected[caller]
        got_code = answer.get("code") if isinstance(answer, dict) else None
        if status != want_status or (want_code is not None and got_code != want_code):
            failures.append(f"{caller}: got {status} {got_code}, want {want_status} {want_code}")
    assert not failures, "\n".join(failures)


async def test_suspended_tenant_keys(gateway_server: GatewayProcess, unique_id: Any) -> None:
    tenant = unique_id("susp")
    await gateway_server.create_tenant(tenant)
    admin_key = await gateway_server.create_key(tenant, "tenant_admin")
    public_key = await gateway_server.create_key(tenant, "public")
    status, _, _ = await gateway_server.request("POST", f"/admin/tenants/{tenant}/suspend",
                                                gateway_server.admin_token, json={"reason": "test"})
    assert status == 200
    for token in (admin_key, public_key):
        status, _, body = await gateway_server.request("GET", "/api/v1/eventlog/status", token)
        assert (status, body["code"]) == (403, "TENANT_SUSPENDED")
    status, _, body = await gateway_server.request("GET", f"/admin/tenants/{tenant}", admin_key)
    assert status == 200 and body["status"] == "suspended"
    status, _, body = await gateway_server.request("POST", f"/admin/tenants/{tenant}/keys", admin_key,
                                                   json={"role": "public"})
    assert (status, body["code"]) == (403, "TENANT_SUSPENDED")
    status, _, _ = await gateway_server.request("POST", f"/admin/tenants/{tenant}/resume", gateway_server.admin_token)
    assert status == 200
    status, _, _ = await gateway_server.request("GET", "/api/v1/eventlog/status", public_key)
    assert status == 200


async def test_unauthenticated_learn_nothing(gateway_server: GatewayProcess, unique_id: Any) -> None:
    """A missing tenant and an existing one look the same to a caller without a valid token."""
    tenant = unique_id("exists")
    await gateway_server.create_tenant(tenant)
    answers = set()
    for tid in (tenant, unique_id("missing")):
        for path in (f"/admin/tenants/{tid}", f"/api/v1/tenants/{tid}/eventos", f"/admin/query/{tid}/dashboard"):
            status, _, body = await gateway_server.request("GET", path, "garbage-token-" + "y" * 20,
                                                           headers={"X-Tenant-Id": tid})
            answers.add((path.replace(tid, "ID"), status, body["code"], body["message"]))
    assert len(answers) == 3, answers
    status, _, body = await gateway_server.request("GET", "/admin/instances", gateway_server.admin_token)
    assert status == 200
    assert all(i.get("tenant", i.get("tenantId")) != tenant for i in body.get("instances", body))
