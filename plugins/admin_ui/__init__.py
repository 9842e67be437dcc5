"""The operator console at ``/admin/ui/``: static assets, open (API.md §5); everything it shows or changes goes
through the public HTTP API with the bearer token the operator signs in with, held in page memory only.

The assets are package data, read once when the routes are declared, so a request can only ever name a file that
ships with the plugin (no path is resolved at request time). Every console response carries a strict
Content-Security-Policy: scripts and styles only from the gateway itself, no inline code, no eval, no framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from libervia import hookimpl
from libervia.errors import ApiError
from libervia.gateway import Gateway
from libervia.routing import Access, Route

UI_PATH = "/admin/ui"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The assets change with the installed version; revalidating keeps an upgraded console consistent.
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every shipped file of a known type, by name."""
    assets = {}
    for entry in resources.files(__name__).joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), CONTENT_TYPES[suffix])
    return assets


def _response(asset: Asset) -> web.Response:
    return web.Response(body=asset.body, headers={"Content-Type": asset.content_type, **SECURITY_HEADERS})


def console_routes(assets: dict[str, Asset]) -> list[Route]:
    index = assets["index.html"]

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=308, headers={"Location": f"{UI_PATH}/", **SECURITY_HEADERS})

    async def serve_index(request: web.Request) -> web.Response:
        return _response(index)

    async def serve_asset(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["asset"])
        if asset is None:
            raise ApiError(404, "NOT_FOUND", f"No route matches {request.method} {request.path}.",
                           headers=SECURITY_HEADERS)
        return _response(asset)

    return [
        Route("GET", UI_PATH, redirect, Access.OPEN, name="console.redirect"),
        Route("GET", f"{UI_PATH}/", serve_index, Access.OPEN, name="console.index"),
        Route("GET", f"{UI_PATH}/{{asset}}", serve_asset, Access.OPEN, name="console.asset"),
    ]


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return console_routes(load_assets())
