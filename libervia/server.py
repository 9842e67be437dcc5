"""Serving: start the gateway, listen, and shut down gracefully on SIGTERM or SIGINT.

Shutdown order: readiness turns 503 at once (``draining``); after ``shutdown_drain_delay_s`` (time for a load
balancer to notice) the listening sockets close; in-flight requests get up to ``shutdown_timeout_s`` to finish;
then plugins flush and every tenant log is closed; the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from loguru import logger

from libervia import __version__
from libervia.app import create_app, start_gateway, stop_gateway
from libervia.jsonlog import access_log
from libervia.plugin_manager import LoadedPlugins
from libervia.settings import Settings


async def serve(settings: Settings, plugins: LoadedPlugins) -> None:
    gateway = await start_gateway(settings, plugins)
    try:
        app = create_app(gateway)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=settings.shutdown_timeout_s)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
        await site.start()
    except BaseException:
        await stop_gateway(gateway)
        raise

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.bind(port=settings.port, host=settings.host, env=settings.env, baseDir=str(settings.base_dir)).info(
        f"libervia gateway {__version__} listening on {settings.host}:{settings.port}"
    )
    await stop.wait()

    gateway.draining = True
    logger.info("shutdown requested: draining")
    delay = float(settings.get("shutdown_drain_delay_s") or 0)
    if delay:
        await asyncio.sleep(delay)
    # AppRunner.cleanup closes the listeners, waits up to shutdown_timeout for in-flight requests, then cancels.
    await runner.cleanup()
    await stop_gateway(gateway)
    access_log.flush()
    logger.info("shutdown complete")
