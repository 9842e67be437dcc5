"""Authenticates the global admin by ``ADMIN_TOKEN``, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from libervia import hookimpl
from libervia.context import Principal
from libervia.gateway import Gateway
from libervia.routing import Role

ADMIN = Principal(Role.GLOBAL_ADMIN)


@hookimpl
def libervia_authenticate(gateway: Gateway, request: web.Request, token: str) -> Principal | None:
    if hmac.compare_digest(token.encode(), gateway.settings.admin_token.encode()):
        return ADMIN
    return None
