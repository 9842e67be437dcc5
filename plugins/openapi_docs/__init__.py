"""``GET /openapi.json`` (the OpenAPI 3.1 document) and ``GET /docs`` (Swagger UI rendering it), both open.

The document is built from the running gateway's own route table (every loaded plugin's routes), once per
process. Swagger UI's assets come from the ``swagger-ui-py`` distribution and are served by the gateway itself:
no CDN, and a Content-Security-Policy that allows nothing but this origin (the page's start-up script is a file
here, not inline).
"""

from __future__ import annotations

import importlib.util
import mimetypes
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from libervia import hookimpl
from libervia.errors import not_found
from libervia.gateway import Gateway
from libervia.openapi import build_openapi
from libervia.responses import json_response
from libervia.routing import Access, Route

OWN_STATIC = Path(__file__).parent / "static"
# The Swagger UI files the page loads, by the name it asks for; nothing else under the package is served.
SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
OWN_ASSETS = ("libervia-init.js",)
# Swagger UI's bundle inserts one fixed <style> element; it is allowed by its hash, not by 'unsafe-inline'.
SWAGGER_STYLE_HASH = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"
CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src 'self'; style-src 'self' {SWAGGER_STYLE_HASH}; "
                           "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer"}


def swagger_static_dir() -> Path:
    """Where ``swagger-ui-py`` keeps its static files, found without importing it (its import loads framework
    adapters we do not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py distribution is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@cache
def _asset(name: str) -> tuple[bytes, str]:
    folder = OWN_STATIC if name in OWN_ASSETS else swagger_static_dir()
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return (folder / name).read_bytes(), content_type


class OpenApiDocs:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._document: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        if self._document is None:
            routes: list[Route] = []
            for batch in self.gateway.pm.hook.libervia_routes(gateway=self.gateway):
                routes.extend(batch or [])
            self._document = build_openapi(self.gateway, routes)
        return self._document

    async def openapi_json(self, request: web.Request) -> web.Response:
        return json_response(self.document())

    async def page(self, request: web.Request) -> web.Response:
        body = (OWN_STATIC / "index.html").read_bytes()
        return web.Response(body=body, headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name not in SWAGGER_ASSETS and name not in OWN_ASSETS:
            raise not_found("NOT_FOUND", f"No such documentation asset: {name}.")
        body, content_type = _asset(name)
        return web.Response(body=body, headers={**PAGE_HEADERS, "Content-Type": content_type,
                                                "Cache-Control": "public, max-age=3600"})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    docs = OpenApiDocs(gateway)
    return [
        Route("GET", "/openapi.json", docs.openapi_json, Access.OPEN, name="openapi"),
        Route("GET", "/docs", docs.page, Access.OPEN, name="docs"),
        Route("GET", "/docs/{asset}", docs.asset, Access.OPEN, name="docs.asset"),
    ]
