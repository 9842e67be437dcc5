"""Prometheus telemetry (the default telemetry plugin).

Counts what the host reports through ``libervia_observe_requests`` and ``libervia_count_event`` (see
:mod:`.metrics` for the families and how their labels are kept bounded), sums them with the other gateway
processes of the machine (:mod:`.sharing`), keeps a recent window of this process for
``/internal/health/operational`` (:mod:`.operational`), and serves the metrics routes of API.md section 5.

The routes render through the ``libervia_render_metrics`` hook rather than calling this plugin directly, so a
plugin that overrides rendering is served by the same routes. Switch telemetry off with ``telemetry = ""`` in
the settings: the host then calls no telemetry hook and these routes do not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.clock import now_iso
from libervia.errors import not_found
from libervia.hookcalls import call_first
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.schemas import load_schema
from libervia.telemetry import RequestObservation
from libervia_plugins.telemetry_prometheus import exposition, operational
from libervia_plugins.telemetry_prometheus.metrics import GatewayMetrics, GaugeReadings
from libervia_plugins.telemetry_prometheus.sharing import SharedTotals

if TYPE_CHECKING:
    from libervia.gateway import Gateway

PLUGIN_NAME = "telemetry_prometheus"


class PrometheusTelemetry:
    """The metrics and the recent window of one gateway. ``clock`` drives the window (tests pass a fake)."""

    def __init__(self, gateway: Gateway, config: dict[str, Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gateway = weakref.ref(gateway)
        self.config = config
        self.metrics = GatewayMetrics(config["latency_buckets_ms"], self._is_registered)
        window = config["operational"]
        self.window = operational.RecentWindow(window["window_s"], window["bucket_s"],
                                               config["latency_buckets_ms"], clock)
        self.shared: SharedTotals | None = None
        self._sharing: asyncio.Task[None] | None = None

    def start_sharing(self, base_dir: Path) -> None:
        """Publish this process's totals and read the others' (see :mod:`.sharing`)."""
        section = self.config["multiprocess"]
        if not section["enabled"]:
            return
        directory = Path(section["directory"]) if section["directory"] else base_dir / "telemetry"
        try:
            self.shared = SharedTotals(directory, self.metrics.bucket_count)
            self.shared.retire_dead()
        except OSError as exc:
            self.shared = None
            logger.warning("telemetry: metrics are not shared with other processes ({}: {})", directory, exc)
            return
        self.share_once()
        self._sharing = asyncio.get_running_loop().create_task(self._share_every(section["interval_s"]))

    def forget_tenant(self, tenant_id: str) -> None:
        """A purged tenant's series go from this process's totals and from what dead processes left; this
        process's share is published again at once, without them."""
        self.metrics.forget_tenant(tenant_id)
        if self.shared is not None:
            try:
                self.shared.forget_tenant(tenant_id)
            except OSError as exc:
                logger.warning("telemetry: the purged tenant {}'s shared series stay: {}", tenant_id, exc)
            self.share_once()

    async def _share_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.share_once()

    def share_once(self) -> None:
        if self.shared is None:
            return
        self.metrics.fold_pending()
        try:
            self.shared.publish(self.metrics.own, self.metrics.version, self._active_instances())
            others, active = self.shared.collect()
        except OSError:
            return  # a full or read-only disk costs the machine totals, never a request
        if others is not None:
            self.metrics.set_others(others, active)
        else:
            self.metrics.others_active_instances = active

    async def stop_sharing(self) -> None:
        if self._sharing is not None:
            self._sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sharing
            self._sharing = None
        self.share_once()

    def _active_instances(self) -> int:
        runtime = getattr(self._gateway(), "runtime", None)
        return runtime.active_count() if runtime is not None else 0

    def _is_registered(self, tenant_id: str) -> bool:
        gateway = self._gateway()
        registry = getattr(gateway, "registry", None)
        return registry is not None and registry.is_registered(tenant_id)

    def observe(self, observation: RequestObservation) -> None:
        self.observe_many([observation])

    def observe_many(self, observations: Sequence[RequestObservation]) -> None:
        self.metrics.observe_many(observations)
        self.window.record_requests([(o.status, o.duration_ms) for o in observations])

    def count(self, name: str, labels: dict[str, str], value: float) -> None:
        if self.metrics.count(name, labels, value):
            self.window.record_event(name, value)

    def render(self, fmt: str, tenant_id: str | None) -> tuple[str, bytes] | None:
        if fmt == "prometheus" and tenant_id is None:
            return exposition.TEXT_CONTENT_TYPE, self.metrics.render_text(self._readings())
        families = self.metrics.families(self._readings(), tenant_id)
        if fmt == "prometheus":
            return exposition.TEXT_CONTENT_TYPE, exposition.render_text(families)
        if fmt == "json":
            return exposition.JSON_CONTENT_TYPE, exposition.render_json(families, now_iso())
        return None

    def operational_health(self) -> dict[str, Any]:
        body = operational.evaluate(self.window.totals(), self.window.latency_bounds_ms,
                                    self.config["operational"], operational.rss_mb())
        return {"timestamp": now_iso(), **body}

    def _readings(self) -> GaugeReadings:
        gateway = self._gateway()
        registry = getattr(gateway, "registry", None)
        runtime = getattr(gateway, "runtime", None)
        return GaugeReadings(
            tenants_by_status=registry.counts_by_status() if registry is not None else None,
            active_instances=runtime.active_count() if runtime is not None else None,
            uptime_s=gateway.uptime_s() if gateway is not None else None,
        )


# One state per gateway: tests run several gateways in one process. The last one used is cached because the
# lookup runs on every request.
_states: weakref.WeakKeyDictionary[Gateway, PrometheusTelemetry] = weakref.WeakKeyDictionary()
_last: tuple[weakref.ref[Gateway], PrometheusTelemetry] | None = None


def telemetry_of(gateway: Gateway) -> PrometheusTelemetry:
    """This plugin's state for ``gateway``, created on first use from the validated plugin config."""
    global _last
    if _last is not None and _last[0]() is gateway:
        return _last[1]
    state = _states.get(gateway)
    if state is None:
        state = _states[gateway] = PrometheusTelemetry(gateway, gateway.plugin_config(PLUGIN_NAME))
    _last = (weakref.ref(gateway), state)
    return state


# --- hooks -----------------------------------------------------------------------------------------------------

@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema(f"plugins/{PLUGIN_NAME}")


@hookimpl
def libervia_startup(gateway: Gateway) -> None:
    state = telemetry_of(gateway)  # so that the window and the uptime start with the gateway, not the first request
    settings = getattr(gateway, "settings", None)
    if settings is not None:
        state.start_sharing(settings.base_dir)


@hookimpl
async def libervia_shutdown(gateway: Gateway) -> None:
    await telemetry_of(gateway).stop_sharing()


@hookimpl
def libervia_observe_requests(gateway: Gateway, observations: Sequence[RequestObservation]) -> None:
    telemetry_of(gateway).observe_many(observations)


@hookimpl
def libervia_count_event(gateway: Gateway, name: str, labels: dict[str, str], value: float) -> None:
    telemetry_of(gateway).count(name, labels, value)


@hookimpl
def libervia_tenant_purged(gateway: Gateway, tenant_id: str) -> None:
    telemetry_of(gateway).forget_tenant(tenant_id)


@hookimpl
def libervia_render_metrics(gateway: Gateway, fmt: str, tenant_id: str | None) -> tuple[str, bytes] | None:
    return telemetry_of(gateway).render(fmt, tenant_id)


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return [
        Route("GET", "/internal/metrics", _metrics_handler("prometheus", scoped=False), Access.GLOBAL_ADMIN,
              name="metrics"),
        Route("GET", "/internal/metrics/json", _metrics_handler("json", scoped=False), Access.GLOBAL_ADMIN,
              name="metrics_json"),
        Route("GET", "/internal/tenants/{id}/metrics", _metrics_handler("prometheus", scoped=True),
              Access.TENANT_READ, name="tenant_metrics", tenant_param="id"),
        Route("GET", "/internal/tenants/{id}/metrics/json", _metrics_handler("json", scoped=True),
              Access.TENANT_READ, name="tenant_metrics_json", tenant_param="id"),
        Route("GET", "/internal/health/operational", _operational_health, Access.GLOBAL_ADMIN,
              name="health_operational"),
    ]


# --- handlers --------------------------------------------------------------------------------------------------

def _metrics_handler(fmt: str, *, scoped: bool) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        gateway = context.gateway(request)
        tenant_id = context.tenant_id(request) if scoped else None
        rendered = await call_first(gateway.pm.hook.libervia_render_metrics, gateway=gateway, fmt=fmt,
                                    tenant_id=tenant_id)
        if rendered is None:
            raise not_found("NOT_FOUND", f"No telemetry plugin renders metrics as {fmt}.")
        content_type, body = rendered
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


async def _operational_health(request: web.Request) -> web.Response:
    return json_response(telemetry_of(context.gateway(request)).operational_health())
