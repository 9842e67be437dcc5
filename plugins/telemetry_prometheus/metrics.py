"""The gateway's metrics, kept in aioprometheus collectors, and a read-only snapshot of them for rendering.

Label values are made safe before they reach a collector, because every distinct value is a new series that
lives until the process ends:

* ``tenant_id`` names a tenant the registry knows, else ``unknown`` (a hostile ``X-Tenant-Id`` cannot add a
  series);
* ``route`` is the route template the host reports (or ``unmatched``), never a raw path;
* ``method`` is one of the standard methods, else ``OTHER`` (aiohttp accepts any token as a method);
* ``reason`` is a machine code (``[A-Z][A-Z0-9_]*``, at most 64 characters), else ``OTHER``; the host's
  codes are a handful, and past ``MAX_REASONS`` distinct ones (a third-party auth plugin gone wild) any new
  code is counted as ``OTHER`` too.

``libervia_http_errors_total`` counts every response with status >= 400, 4xx and 5xx alike, labelled with its
status, so both "clients failing" and "server failing" can be read from it; the ``ERROR_RATE_SPIKE`` alert
selects ``status=~"5.."``.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aioprometheus import Counter, Gauge, Histogram, Registry
from aioprometheus.histogram import Histogram as AioHistogramValue

from libervia import telemetry
from libervia.telemetry import RequestObservation

UNKNOWN_TENANT = "unknown"
TENANT_STATUSES = ("active", "suspended", "deleted")
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_REASONS = 32


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float | HistogramValue


@dataclass(frozen=True, slots=True)
class HistogramValue:
    buckets: list[tuple[float, int]]  # cumulative, ascending upper bounds, ending with (+inf, count)
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    type: str  # counter, gauge, histogram
    samples: list[Sample]


@dataclass(frozen=True, slots=True)
class GaugeReadings:
    """Values computed when the metrics are rendered rather than counted as they happen."""

    tenants_by_status: dict[str, int] | None
    active_instances: int | None
    uptime_s: float | None


class GatewayMetrics:
    """The metric families of API.md section 5, in one aioprometheus registry of their own.

    ``is_registered`` answers whether a tenant id may appear as a label value (the tenant registry's cheap,
    in-memory lookup).
    """

    def __init__(self, latency_buckets_ms: Sequence[float], is_registered: Callable[[str], bool]) -> None:
        self._is_registered = is_registered
        self._reasons: set[str] = set()
        # observe() runs on every request, so it only tallies into plain dicts keyed by tuples; the tallies reach
        # the aioprometheus collectors when metrics are rendered. Histogram series are updated in place.
        self._pending_responses: dict[tuple[str, str, int], int] = {}
        self._pending_tenant: dict[tuple[str, int], int] = {}
        # Per (method, route): [sum, count per bucket (not cumulative) ..., count above the last bound].
        self._pending_durations: dict[tuple[str, str], list[float]] = {}
        self.registry = Registry()
        r = self.registry
        self.requests = Counter("libervia_http_requests_total", "HTTP responses sent, by method, route template "
                                "and status.", registry=r)
        self._bounds = [float(b) for b in sorted(latency_buckets_ms)]
        self.duration = Histogram("libervia_http_request_duration_ms", "Time from request received to response "
                                  "sent, in milliseconds, by method and route template.", registry=r,
                                  buckets=[float(b) for b in sorted(latency_buckets_ms)])
        self.errors = Counter("libervia_http_errors_total", "HTTP responses with status >= 400 (4xx and 5xx), "
                              "by method, route template and status.", registry=r)
        self.auth_failures = Counter("libervia_auth_failures_total", "Rejected authentications and "
                                     "authorisations, by reason code and claimed tenant (unknown unless "
                                     "registered).", registry=r)
        self.conflicts = Counter("libervia_tenant_conflicts_total", "Requests refused with TENANT_CONFLICT, by "
                                 "tenant (unknown unless registered).", registry=r)
        self.rate_limited = Counter("libervia_rate_limited_total", "Requests refused with RATE_LIMITED, by "
                                    "tenant.", registry=r)
        self.tenants = Gauge("libervia_tenants", "Registered tenants, by status.", registry=r)
        self.active_instances = Gauge("libervia_active_instances", "Tenant Core instances running in this "
                                      "process.", registry=r)
        self.appends = Counter("libervia_eventlog_appends_total", "Events appended to tenant event logs, by "
                               "tenant.", registry=r)
        self.uptime = Gauge("libervia_process_uptime_seconds", "Seconds since this gateway process started.",
                            registry=r)
        self.tenant_requests = Counter("libervia_tenant_requests_total", "HTTP responses sent for a tenant, by "
                                       "tenant and status (the per-tenant view of libervia_http_requests_total)."
                                       , registry=r)
        # Families whose series carry a tenant_id label: what /internal/tenants/{id}/metrics shows.
        self._tenant_families = (self.auth_failures, self.conflicts, self.rate_limited, self.appends,
                                 self.tenant_requests)
        self._events = {
            telemetry.AUTH_FAILURE: self.auth_failures,
            telemetry.TENANT_CONFLICT: self.conflicts,
            telemetry.RATE_LIMITED: self.rate_limited,
            telemetry.EVENTLOG_APPEND: self.appends,
        }

    def tenant_label(self, tenant_id: str | None) -> str:
        if tenant_id and self._is_registered(tenant_id):
            return tenant_id
        return UNKNOWN_TENANT

    def observe(self, observation: RequestObservation) -> None:
        method = observation.method if observation.method in STANDARD_METHODS else "OTHER"
        status = observation.status
        key = (method, observation.route, status)
        pending = self._pending_responses
        pending[key] = pending.get(key, 0) + 1
        # A NaN would land in _count but in no bucket, breaking "+Inf bucket == _count".
        duration = observation.duration_ms if math.isfinite(observation.duration_ms) else 0.0
        duration = max(0.0, duration)
        tally = self._pending_durations.get(key[:2])
        if tally is None:
            tally = self._pending_durations[key[:2]] = [0.0] + [0] * (len(self._bounds) + 1)
        tally[0] += duration
        tally[1 + bisect.bisect_left(self._bounds, duration)] += 1
        if observation.tenant_id is not None:
            tenant_key = (observation.tenant_id, status)
            self._pending_tenant[tenant_key] = self._pending_tenant.get(tenant_key, 0) + 1

    def _fold_pending(self) -> None:
        """Move the per-request tallies into the collectors (done when rendering, not per request)."""
        durations, self._pending_durations = self._pending_durations, {}
        for (method, route), tally in durations.items():
            labels = {"method": method, "route": route}
            series = self.duration.values.get(labels)
            if series is None:
                series = AioHistogramValue(*self._bounds)
                self.duration.set_value(labels, series)  # validates the label names once per series
            cumulative: float = 0
            for bound, count in zip(series.buckets, tally[1:], strict=True):
                cumulative += count
                series.buckets[bound] += cumulative  # type: ignore[assignment]  # the counts in tally are ints
            series.sum += tally[0]
            series.observations += cumulative
        responses, self._pending_responses = self._pending_responses, {}
        for (method, route, status), count in responses.items():
            labels = {"method": method, "route": route, "status": str(status)}
            self.requests.add(labels, count)
            if status >= 400:
                self.errors.add(labels, count)
        tenant_counts, self._pending_tenant = self._pending_tenant, {}
        for (tenant_id, status), count in tenant_counts.items():
            tenant = self.tenant_label(tenant_id)
            if tenant != UNKNOWN_TENANT:
                self.tenant_requests.add({"tenant_id": tenant, "status": str(status)}, count)

    def count(self, name: str, labels: dict[str, str], value: float) -> bool:
        """Count a host event; return False for names this plugin does not know (ignored)."""
        counter = self._events.get(name)
        if counter is None or not value > 0:
            return False
        safe = {"tenant_id": self.tenant_label(labels.get("tenant_id"))}
        if name == telemetry.AUTH_FAILURE:
            safe["reason"] = self._reason_label(labels.get("reason", ""))
        counter.add(safe, value)
        return True

    def _reason_label(self, reason: str) -> str:
        if reason in self._reasons:
            return reason
        if len(self._reasons) < MAX_REASONS and _REASON.fullmatch(reason):
            self._reasons.add(reason)
            return reason
        return "OTHER"

    def families(self, readings: GaugeReadings, tenant_id: str | None = None) -> list[Family]:
        """A snapshot of every family, in exposition order; with ``tenant_id`` only that tenant's series."""
        self._fold_pending()
        self._apply(readings)
        if tenant_id is None:
            collectors = list(self.registry.get_all())
        else:
            collectors = list(self._tenant_families)
        result = []
        for collector in collectors:
            samples = [_sample(collector, labels, value) for labels, value in collector.get_all()]
            if tenant_id is not None:
                samples = [s for s in samples if s.labels.get("tenant_id") == tenant_id]
            samples.sort(key=lambda s: sorted(s.labels.items()))
            result.append(Family(collector.name, collector.doc, collector.kind.name, samples))
        return result

    def _apply(self, readings: GaugeReadings) -> None:
        if readings.tenants_by_status is not None:
            for status in TENANT_STATUSES:
                self.tenants.set({"status": status}, readings.tenants_by_status.get(status, 0))
        if readings.active_instances is not None:
            self.active_instances.set({}, readings.active_instances)
        if readings.uptime_s is not None:
            self.uptime.set({}, round(readings.uptime_s, 3))


def _sample(collector: Any, labels: dict[str, str], value: Any) -> Sample:
    if isinstance(collector, Histogram):
        # get_value is typed as returning any metric value; a Histogram collector holds histogram values.
        raw: AioHistogramValue = collector.get_value(labels)  # type: ignore[assignment]  # aioprometheus.histogram.Histogram: cumulative bucket counts
        buckets = [(bound, count) for bound, count in raw.buckets.items() if bound != math.inf]
        # +Inf is written from the observation count, so the two agree by construction.
        buckets.append((math.inf, raw.observations))
        return Sample(labels, HistogramValue(buckets, raw.observations, raw.sum))
    return Sample(labels, value)
