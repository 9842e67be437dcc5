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

from libervia import __version__, garbage_collection, gil_sharing
from libervia.app import SCOPE_KEY, create_app, start_gateway, stop_gateway
from libervia.edge import EdgeRunner
from libervia.jsonlog import access_log, register_secret
from libervia.plugin_manager import LoadedPlugins
from libervia.settings import SECRET_SETTINGS, Settings


def register_secrets(settings: Settings) -> None:
    """Teach the JSON log the configured secrets, so no output of this process can carry them."""
    for secret in SECRET_SETTINGS:
        register_secret(settings.get(secret))


def make_runner(app: web.Application, settings: Settings, shutdown_timeout_s: float) -> EdgeRunner:
    """The runner every serving path uses (single process or a worker): the edge protocol with its timeouts.

    Everything built so far (modules, plugins, schemas, the registry copy...) lives as long as the process: it is
    moved out of the collector's reach, so that a full collection under load walks only what requests made,
    not the hundred thousand objects of start-up (one such walk measured tens of milliseconds); see
    :mod:`libervia.garbage_collection`. Worker threads hand the interpreter back to the event loop sooner
    (:mod:`libervia.gil_sharing`)."""
    garbage_collection.configure_for_serving()
    gil_sharing.configure_for_serving()
    http = settings.section("http")
    return EdgeRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout_s,
                      keepalive_timeout=http["keepalive_timeout_s"],
                      edge_kwargs={"scope": app[SCOPE_KEY], "header_timeout_s": http["header_timeout_s"],
                                   "body_timeout_s": http["body_timeout_s"],
                                   "body_min_bytes_per_s": http["body_min_bytes_per_s"]})


async def serve(settings: Settings, plugins: LoadedPlugins) -> None:
    register_secrets(settings)
    gateway = await start_gateway(settings, plugins)
    try:
        runner = make_runner(create_app(gateway), settings, settings.shutdown_timeout_s)
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
    # AppRunner.cleanup closes the listeners, waits up to shutdown_timeout for in-flight requests (EdgeProtocol keeps
    # reading the bodies of those whose headers arrived), then cancels.
    await runner.cleanup()
    await stop_gateway(gateway)
    access_log.flush()
    logger.info("shutdown complete")
