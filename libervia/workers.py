"""Serving with several worker processes on one port: gunicorn's arbiter with aiohttp's worker class.

gunicorn is the process manager aiohttp documents for multi-process deployment, and ``aiohttp.worker`` ships the
worker class (not deprecated in the aiohttp we pin). The arbiter forks ``workers`` processes that share the
listening socket; each worker starts its own gateway (storage, registry, runtimes, limiter) *after* the fork, so
no connection, lock or task crosses a process boundary. The arbiter replaces a worker that dies (logged here as
JSON through loguru, like every other line) and, on SIGTERM or SIGINT, asks every worker to stop and exits 0 once
they have, giving them ``shutdown_timeout_s``.

A worker's shutdown mirrors the single-process one in :mod:`libervia.server`: readiness turns 503 at once, the
listeners stay open for ``shutdown_drain_delay_s`` (time for a load balancer to notice), then in-flight requests
get the rest of the budget, then plugins flush and every tenant log is closed (checkpointed), and the access log
is flushed before the process exits.
"""

from __future__ import annotations

import math
import os
import signal
from types import FrameType
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from loguru import logger

from libervia import __version__, event_loop
from libervia.app import create_app, start_gateway, stop_gateway
from libervia.context import GATEWAY_KEY
from libervia.errors import StartupError
from libervia.gateway import Gateway
from libervia.jsonlog import access_log
from libervia.plugin_manager import LoadedPlugins
from libervia.server import make_runner, register_secrets
from libervia.settings import Settings
from libervia.storage import StorageError

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR

# Of a worker's shutdown budget (after the drain delay), the share in-flight requests get; the rest closes logs.
_IN_FLIGHT_SHARE = 0.9


def worker_count(requested: int) -> int:
    """``0`` means one worker per CPU this process may run on."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LoguruLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's error log through loguru, so the arbiter writes the same JSON lines as the gateway.

    The access log stays off: each worker writes its own access lines (:mod:`libervia.jsonlog`).
    """

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg

    def _emit(self, level: str, msg: str, *args: Any, **kwargs: Any) -> None:
        text = msg % args if args else str(msg)
        logger.opt(depth=2, exception=kwargs.get("exc_info")).bind(component="gunicorn", pid=os.getpid()).log(
            level, text)

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("CRITICAL", msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("ERROR", msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("WARNING", msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("INFO", msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("DEBUG", msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("ERROR", msg, *args, exc_info=True)

    def log(self, lvl: Any, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("INFO", msg, *args, **kwargs)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None

    def reopen_files(self) -> None:
        return None

    def close_on_exec(self) -> None:
        return None


class GatewayWorker(GunicornWebWorker):
    """aiohttp's worker, with the gateway's drain: readiness 503 first, listeners closed after the drain delay."""

    gateway: Gateway | None = None
    drain_delay_s: float = 0.0

    def init_process(self) -> None:
        # The event_loop setting holds for workers too; aiohttp's worker creates its loop from the policy.
        event_loop.install_policy(str(self.app.settings.get("event_loop", "auto")))
        super().init_process()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._begin_drain()

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        # SIGINT/SIGQUIT: the same graceful path (gunicorn's quick exit would cut in-flight requests).
        self._begin_drain()

    def _begin_drain(self) -> None:
        if self.gateway is None or self.gateway.draining:
            self.alive = False
            return
        self.gateway.draining = True
        logger.bind(pid=os.getpid()).info("shutdown requested: draining")
        # The base loop checks ``alive`` about once a second; it then stops the sites and waits for in-flight
        # requests (the runner's shutdown timeout).
        self.loop.call_later(self.drain_delay_s, self._stop_serving)

    def _stop_serving(self) -> None:
        self.alive = False
        self._notify_waiter_done()


class GatewayApplication(BaseApplication):  # type: ignore[misc]
    """The gunicorn application: its config comes from our settings, never from gunicorn's command line."""

    def __init__(self, settings: Settings, plugins: LoadedPlugins, workers: int) -> None:
        self.settings = settings
        self.plugins = plugins
        self.workers = workers
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        timeout = float(settings.shutdown_timeout_s)
        options: dict[str, Any] = {
            "bind": [f"[{settings.host}]:{settings.port}" if ":" in settings.host else
                     f"{settings.host}:{settings.port}"],
            "workers": self.workers,
            "worker_class": f"{GatewayWorker.__module__}.{GatewayWorker.__qualname__}",
            "graceful_timeout": max(1, math.ceil(timeout)),
            # A worker whose loop has not checked in for this long is killed and replaced.
            "timeout": 30,
            "backlog": 1024,
            "logger_class": f"{LoguruLogger.__module__}.{LoguruLogger.__qualname__}",
            "accesslog": None,
            "proc_name": "libervia",
            "post_fork": _post_fork,
            "child_exit": _child_exit,
            "when_ready": _when_ready,
        }
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25: one fixed path per user would clash
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        settings, plugins = self.settings, self.plugins

        async def factory() -> web.AppRunner:
            return await _worker_runner(settings, plugins)

        return factory


async def _worker_runner(settings: Settings, plugins: LoadedPlugins) -> web.AppRunner:
    """Start this worker's gateway and its runner; the runner's cleanup stops the gateway."""
    register_secrets(settings)
    try:
        gateway = await start_gateway(settings, plugins)
    except (StorageError, StartupError) as exc:
        # One line, as the single-process server says it, instead of gunicorn's traceback; exit code 3 is
        # gunicorn's "worker failed to boot", on which the arbiter stops rather than respawning forever.
        problems = exc.problems if isinstance(exc, StartupError) else [f"storage: {exc}"]
        for problem in problems:
            logger.bind(pid=os.getpid()).error(f"worker cannot start: {problem}")
        raise SystemExit(WORKER_BOOT_ERROR) from None
    delay = float(settings.get("shutdown_drain_delay_s") or 0)
    worker = _current_worker
    if worker is not None:
        worker.gateway = gateway
        worker.drain_delay_s = delay
    try:
        app = create_app(gateway)
        app.on_cleanup.append(_stop_gateway_on_cleanup)
    except BaseException:
        await stop_gateway(gateway)
        raise
    budget = max(0.0, float(settings.shutdown_timeout_s) - delay) * _IN_FLIGHT_SHARE
    logger.bind(pid=os.getpid(), port=settings.port).info(
        f"libervia gateway {__version__} worker {os.getpid()} serving on {settings.host}:{settings.port}")
    return make_runner(app, settings, budget)


async def _stop_gateway_on_cleanup(app: web.Application) -> None:
    # on_cleanup runs after the runner has waited for in-flight requests: closing logs here cannot cut one.
    await stop_gateway(app[GATEWAY_KEY])
    access_log.flush()
    logger.bind(pid=os.getpid()).info("shutdown complete")


_current_worker: GatewayWorker | None = None


def _post_fork(arbiter: Any, worker: GatewayWorker) -> None:
    global _current_worker
    _current_worker = worker
    logger.bind(pid=worker.pid, event="worker_started").info(f"worker {worker.pid} started")


def _child_exit(arbiter: Any, worker: Any) -> None:
    # Called in the arbiter for every worker that exited; while the arbiter runs it forks a replacement.
    # Stopping: we were told to, or the arbiter itself is halting (it drops its listeners first, e.g. when a
    # worker failed to boot).
    stopping = getattr(arbiter, "_libervia_stopping", False) or not arbiter.LISTENERS
    logger.bind(pid=worker.pid, event="worker_exited", replaced=not stopping).log(
        "INFO" if stopping else "WARNING",
        f"worker {worker.pid} exited" + ("" if stopping else "; starting a replacement"))


def _when_ready(arbiter: Any) -> None:
    # Marks the shutdown in the arbiter, so that child_exit tells a replacement from a stop.
    def mark(sig: int, frame: FrameType | None) -> None:
        arbiter._libervia_stopping = True
        # SIGINT and SIGQUIT would make gunicorn stop without waiting; every stop here is the graceful one.
        arbiter.signal(signal.SIGTERM, frame)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, mark)
    logger.bind(pid=os.getpid(), workers=arbiter.num_workers).info(
        f"libervia master {os.getpid()} running {arbiter.num_workers} workers")


def serve_workers(settings: Settings, plugins: LoadedPlugins, workers: int) -> int:
    """Run the arbiter until it is told to stop; its exit status (0 after a graceful stop, 3 when a worker could
    not start, e.g. its storage was unreachable)."""
    arbiter = Arbiter(GatewayApplication(settings, plugins, workers))
    try:
        arbiter.run()
    except SystemExit as exc:
        return int(exc.code or 0)
    except HaltServer as exc:
        # gunicorn raises this out of its own halt when a second worker fails to boot while it is stopping.
        arbiter.kill_workers(signal.SIGKILL)
        logger.bind(pid=os.getpid()).error(f"Shutting down: {exc.reason}")
        return int(exc.exit_status)
    return 0
