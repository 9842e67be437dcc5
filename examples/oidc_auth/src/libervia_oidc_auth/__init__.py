"""OIDC/JWT bearer authentication for the Libervia Gateway (an example plugin).

A bearer token that is a JWS-signed JWT from the configured identity provider is verified against the provider's
JSON Web Key Set (a file: ``jwks_file``, re-read when it changes, so a key rotation needs no restart), then its
``exp``, ``nbf``, ``iss`` and ``aud`` claims. Its ``tenant`` claim names the tenant and its ``role`` claim, through
the ``roles`` table, the gateway role. The tri-state rule of ``libervia_authenticate``:

* not a JWT at all (a tenant key, the admin token), or a JWT signed by a key not in the set: ``None``, so the
  built-in key authentication still answers;
* a JWT of ours that verifies: a :class:`~libervia.context.Principal`;
* a JWT of ours that fails (bad signature, expired, not yet valid, wrong issuer or audience, no tenant, a role
  not in the table): 401 ``INVALID_TOKEN`` naming the reason, never the token.

Principals from a JWT carry no key id, so the per-key rate limit of tenant keys does not apply to them.

Settings::

    [default.plugin.oidc_auth]
    jwks_file = "/etc/libervia/idp-jwks.json"
    issuer = "https://idp.example.com/"
    audience = "libervia-gateway"
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from libervia import hookimpl
from libervia.context import Principal
from libervia.errors import AuthError, StartupError
from libervia.gateway import Gateway
from libervia.routing import Role, schema_resource

PLUGIN_NAME = "oidc_auth"


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return schema_resource(__name__, "settings.schema.json")


def jwt_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a compact JWS (``header.payload.signature``), or None when ``token`` is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return header if isinstance(header, dict) and isinstance(header.get("alg"), str) else None


@dataclass
class KeyFile:
    """The JWKS file and the key set read from it, re-read when its modification time changes."""

    path: Path
    mtime_ns: int = -1
    keys: KeySet | None = None
    kids: frozenset[str] = frozenset()

    def current(self) -> KeySet:
        stat = self.path.stat()
        if self.keys is None or stat.st_mtime_ns != self.mtime_ns:
            document = json.loads(self.path.read_text("utf-8"))
            self.keys = KeySet.import_key_set(document)
            self.kids = frozenset(str(key.get("kid")) for key in document.get("keys", []) if key.get("kid"))
            self.mtime_ns = stat.st_mtime_ns
        return self.keys


class Verifier:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.key_file = KeyFile(Path(config["jwks_file"]))
        self.claims = jwt.JWTClaimsRegistry(
            leeway=config["leeway_s"],
            iss={"essential": True, "value": config["issuer"]},
            aud={"essential": True, "value": config["audience"]},
            exp={"essential": True},
        )

    def is_ours(self, header: dict[str, Any]) -> bool:
        self.key_file.current()
        kid = header.get("kid")
        # A token naming a key we do not hold belongs to someone else (or to a rotation we have not seen yet).
        return kid is None or kid in self.key_file.kids

    def principal(self, token: str) -> Principal:
        try:
            decoded = jwt.decode(token, self.key_file.current(), algorithms=self.config["algorithms"])
            self.claims.validate(decoded.claims)
        except jose_errors.ExpiredTokenError:
            raise rejected("the token has expired") from None
        except jose_errors.ClaimError as exc:
            claim = getattr(exc, "claim", "?")
            if claim == "nbf":
                raise rejected("the token is not valid yet") from None
            raise rejected(f"claim {claim!r} is missing or not accepted") from None
        except jose_errors.JoseError as exc:
            raise rejected(f"the token does not verify ({exc.error})") from None
        claims = decoded.claims
        role_name = self.config["roles"].get(str(claims.get(self.config["role_claim"], "")))
        if role_name is None:
            raise rejected(f"claim {self.config['role_claim']!r} names no gateway role")
        role = Role(role_name)
        tenant = claims.get(self.config["tenant_claim"])
        if role is Role.GLOBAL_ADMIN:
            return Principal(role=role)
        if not isinstance(tenant, str) or not tenant:
            raise rejected(f"claim {self.config['tenant_claim']!r} names no tenant")
        return Principal(role=role, tenant_id=tenant)


def rejected(why: str) -> AuthError:
    return AuthError("INVALID_TOKEN", f"The bearer token was refused: {why}.")


_VERIFIERS: dict[int, Verifier] = {}


@hookimpl
def libervia_startup(gateway: Gateway) -> None:
    config = gateway.plugin_config(PLUGIN_NAME)
    verifier = Verifier(config)
    try:
        verifier.key_file.current()
    except (OSError, ValueError, jose_errors.JoseError) as exc:
        raise StartupError([f"plugin.{PLUGIN_NAME}.jwks_file: cannot be read as a JWKS ({exc})"]) from None
    _VERIFIERS[id(gateway)] = verifier


@hookimpl
def libervia_shutdown(gateway: Gateway) -> None:
    _VERIFIERS.pop(id(gateway), None)


@hookimpl
def libervia_authenticate(gateway: Gateway, token: str) -> Principal | None:
    header = jwt_header(token)
    verifier = _VERIFIERS.get(id(gateway))
    if header is None or verifier is None:
        return None
    try:
        if not verifier.is_ours(header):
            return None
    except (OSError, ValueError, jose_errors.JoseError):
        # The key file went missing or bad after start-up: refuse our tokens rather than guess.
        raise AuthError("INVALID_TOKEN", "The identity provider's keys cannot be read.",
                        status=401) from None
    return verifier.principal(token)


