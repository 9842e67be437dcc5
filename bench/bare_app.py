"""The baseline: a bare aiohttp app answering GET /health like the gateway does, with nothing else."""

from __future__ import annotations

import sys
import time

from aiohttp import web

STARTED = time.monotonic()


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": "bare", "uptime_s": time.monotonic() - STARTED})


def main() -> None:
    app = web.Application()
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
