"""The OIDC/JWT authenticator on an in-process gateway (libervia.testing), against a JWKS file written here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import libervia_oidc_auth
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from libervia.errors import StartupError
from libervia.testing import GatewayHarness
from libervia.testing.contracts.authenticate import AuthenticatorContract

pytestmark = pytest.mark.asyncio

ISSUER = "https://idp.example.test/"
AUDIENCE = "libervia-gateway"
SIGNING = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
ROTATED = ECKey.generate_key("P-256", parameters={"kid": "idp-2"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "someone-else"})


def jwks(path: Path, *keys: Any) -> Path:
    path.write_text(json.dumps({"keys": [key.as_dict(private=False) for key in keys]}))
    return path


def token(key: Any = SIGNING, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "nbf": now - 10, "sub": "user-1", **claims}
    return jwt.encode({"alg": alg, "kid": key.kid}, {k: v for k, v in body.items() if v is not None}, key)


def settings(tmp_path: Path) -> dict[str, Any]:
    return {"plugin": {"oidc_auth": {"jwks_file": str(jwks(tmp_path / "jwks.json", SIGNING)), "issuer": ISSUER,
                                     "audience": AUDIENCE, "leeway_s": 0,
                                     "roles": {"viewer": "public", "admin": "tenant_admin", "ops": "global_admin"}}}}


class TestContract(AuthenticatorContract):
    """The kit's authenticate contract, as the built-in key authentication passes it."""

    @pytest.fixture
    def contract_settings(self, tmp_path: Path) -> dict[str, Any]:
        return settings(tmp_path)

    @pytest.fixture
    def contract_plugins(self) -> list[object]:
        return [libervia_oidc_auth]

    @pytest.fixture(params=["viewer", "admin", "ops"])
    def accepted_credential(self, request: pytest.FixtureRequest) -> Any:
        async def credential(harness: GatewayHarness) -> tuple[str, dict[str, Any]]:
            if request.param == "ops":
                return token(role="ops"), {"role": "global_admin", "tenant_id": None}
            tenant = await harness.create_tenant()
            role = {"viewer": "public", "admin": "tenant_admin"}[request.param]
            return token(role=request.param, tenant=tenant.tenant_id), {"role": role, "tenant_id": tenant.tenant_id}
        return credential

    @pytest.fixture
    def rejected_token(self) -> Any:
        async def expired(harness: GatewayHarness) -> str:
            return token(role="viewer", tenant="acme", exp=int(time.time()) - 60)
        return expired


@pytest.fixture
def libervia_settings(tmp_path: Path) -> dict[str, Any]:
    return settings(tmp_path)


@pytest.fixture
def libervia_plugins() -> list[object]:
    return [libervia_oidc_auth]


@pytest.mark.parametrize(("claims", "why"), [
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"nbf": int(time.time()) + 600}, "not valid yet"),
    ({"aud": "another-service"}, "'aud'"),
    ({"iss": "https://evil.example/"}, "'iss'"),
    ({"exp": None}, "'exp'"),
    ({"role": "superuser"}, "names no gateway role"),
    ({"tenant": None}, "names no tenant"),
])
async def test_each_bad_claim_is_refused_with_its_reason(libervia_gateway: GatewayHarness, claims: dict[str, Any],
                                                         why: str) -> None:
    tenant = await libervia_gateway.create_tenant()
    bad = token(**{"role": "viewer", "tenant": tenant.tenant_id, **claims})
    response = await libervia_gateway.as_role(bad).get("/api/v1/eventos")
    assert response.status == 401
    body = await response.json()
    assert body["code"] == "INVALID_TOKEN" and why in body["message"] and bad not in json.dumps(body)


async def test_a_forged_signature_is_refused(libervia_gateway: GatewayHarness) -> None:
    tenant = await libervia_gateway.create_tenant()
    good = token(role="viewer", tenant=tenant.tenant_id)
    header, payload, signature = good.split(".")
    forged = ".".join([header, payload, signature[::-1]])
    response = await libervia_gateway.as_role(forged).get("/api/v1/eventos")
    assert response.status == 401 and "does not verify" in (await response.json())["message"]


async def test_another_issuers_jwt_is_not_mine_and_tenant_keys_still_work(libervia_gateway: GatewayHarness) -> None:
    tenant = await libervia_gateway.create_tenant()
    foreign = token(key=STRANGER, role="viewer", tenant=tenant.tenant_id)
    response = await libervia_gateway.as_role(foreign).get("/api/v1/eventos")
    assert response.status == 401 and "refused" not in (await response.json())["message"]
    assert (await tenant.public.get("/api/v1/eventos")).status == 200


async def test_jwt_principal_reaches_the_tenant_api(libervia_gateway: GatewayHarness) -> None:
    tenant = await libervia_gateway.create_tenant()
    viewer = libervia_gateway.as_role(token(role="viewer", tenant=tenant.tenant_id))
    assert (await viewer.get("/api/v1/eventos")).status == 200
    # a public role cannot manage the tenant
    assert (await viewer.get(f"/admin/tenants/{tenant.tenant_id}/keys")).status == 403


async def test_a_rotated_key_is_picked_up_without_restart(libervia_gateway: GatewayHarness,
                                                          tmp_path: Path) -> None:
    tenant = await libervia_gateway.create_tenant()
    rotated = token(key=ROTATED, alg="ES256", role="viewer", tenant=tenant.tenant_id)
    assert (await libervia_gateway.as_role(rotated).get("/api/v1/eventos")).status == 401
    path = jwks(tmp_path / "jwks.json", SIGNING, ROTATED)
    stat = path.stat()

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert (await libervia_gateway.as_role(rotated).get("/api/v1/eventos")).status == 200


async def test_settings_are_validated_and_the_key_file_is_checked(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as missing:
        GatewayHarness(tmp_path / "a", {"plugin": {"oidc_auth": {"issuer": ISSUER}}}, plugins=[libervia_oidc_auth])
    assert any("plugin.oidc_auth" in line and "jwks_file" in line for line in missing.value.problems)
    (tmp_path / "garbage.json").write_text("{nope")
    harness = GatewayHarness(tmp_path / "b", {"plugin": {"oidc_auth": {
        "jwks_file": str(tmp_path / "garbage.json"), "issuer": ISSUER, "audience": AUDIENCE}}},
        plugins=[libervia_oidc_auth])
    with pytest.raises(StartupError, match="jwks_file: cannot be read"):
        await harness.start()
    await harness.stop()
