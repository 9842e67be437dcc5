"""The gateway's metrics: plain dictionaries of series, summed with the other gateway processes of the machine,
and rendered incrementally.

Label values are made safe before they are counted, because every distinct value is a new series that lives
until the process ends:

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

Several processes on one machine (``--workers``, or gateways sharing a BASE_DIR) answer for the machine: the
counters and histograms exposed are this process's own plus the last published totals of every other one
(:mod:`.sharing`), dead ones included, so a counter never goes down when a worker dies. Gauges combine as
their meaning says: ``libervia_tenants`` is read from the shared registry (the same in every process),
``libervia_active_instances`` is summed over the live processes, ``libervia_process_uptime_seconds`` is the
uptime of the process that answers.

A scrape must stay cheap at thousands of tenants, so the exposition is kept per family: a family whose series
did not change since the last scrape is served from its cached text, and within a family each series keeps its
rendered label part.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from libervia import telemetry
from libervia.telemetry import RequestObservation

UNKNOWN_TENANT = "unknown"
TENANT_STATUSES = ("active", "suspended", "deleted")
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_REASONS = 32

Labels = tuple[tuple[str, str], ...]  # sorted by label name


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


REQUESTS = "libervia_http_requests_total"
DURATION = "libervia_http_request_duration_ms"
ERRORS = "libervia_http_errors_total"
AUTH_FAILURES = "libervia_auth_failures_total"
CONFLICTS = "libervia_tenant_conflicts_total"
RATE_LIMITED = "libervia_rate_limited_total"
LIMITER_ERRORS = "libervia_rate_limiter_errors_total"
TENANTS = "libervia_tenants"
ACTIVE_INSTANCES = "libervia_active_instances"
APPENDS = "libervia_eventlog_appends_total"
UPTIME = "libervia_process_uptime_seconds"
TENANT_REQUESTS = "libervia_tenant_requests_total"

# Exposition order, help and type of every family of API.md section 5.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    (REQUESTS, "HTTP responses sent, by method, route template and status.", "counter"),
    (DURATION, "Time from request received to response sent, in milliseconds, by method and route template.",
     "histogram"),
    (ERRORS, "HTTP responses with status >= 400 (4xx and 5xx), by method, route template and status.", "counter"),
    (AUTH_FAILURES, "Rejected authentications and authorisations, by reason code and claimed tenant (unknown "
     "unless registered).", "counter"),
    (CONFLICTS, "Requests refused with TENANT_CONFLICT, by tenant (unknown unless registered).", "counter"),
    (RATE_LIMITED, "Requests refused with RATE_LIMITED, by tenant.", "counter"),
    (LIMITER_ERRORS, "Rate-limit decisions taken without the limiter's backend (unreachable), by outcome: "
     "allowed (fail open) or rejected (fail closed).", "counter"),
    (TENANTS, "Registered tenants, by status.", "gauge"),
    (ACTIVE_INSTANCES, "Tenant Core instances running, summed over the live gateway processes of the machine.",
     "gauge"),
    (APPENDS, "Events appended to tenant event logs, by tenant.", "counter"),
    (UPTIME, "Seconds since this gateway process started.", "gauge"),
    (TENANT_REQUESTS, "HTTP responses sent for a tenant, by tenant and status (the per-tenant view of "
     "libervia_http_requests_total).", "counter"),
)
COUNTER_FAMILIES = tuple(name for name, _, kind in FAMILIES if kind == "counter")
# Families whose series carry a tenant_id label: what /internal/tenants/{id}/metrics shows.
TENANT_FAMILIES = (AUTH_FAILURES, CONFLICTS, RATE_LIMITED, APPENDS, TENANT_REQUESTS)


def format_number(value: float) -> str:
    if type(value) is int and abs(value) < 2**53:  # most counters: the cheap case first
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    pairs = list(labels)
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in pairs) + "}"


class Totals:
    """Counter and histogram series: ``counters[family][labels] = value`` and, for the latency histogram,
    ``histogram[labels] = [sum, count per bucket (not cumulative) ..., count above the last bound]``."""

    def __init__(self, bucket_count: int) -> None:
        self.counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTER_FAMILIES}
        self.histogram: dict[Labels, list[float]] = {}
        self.width = bucket_count + 2

    def add_counter(self, family: str, labels: Labels, value: float) -> None:
        series = self.counters[family]
        series[labels] = series.get(labels, 0) + value

    def add_tally(self, labels: Labels, tally: Sequence[float]) -> None:
        current = self.histogram.get(labels)
        if current is None:
            self.histogram[labels] = list(tally)
        else:
            for index, amount in enumerate(tally):
                current[index] += amount

    def drop_tenant(self, tenant_id: str) -> None:
        """Remove every series labelled with ``tenant_id``."""
        label = ("tenant_id", tenant_id)
        for family in TENANT_FAMILIES:
            series = self.counters[family]
            for labels in [labels for labels in series if label in labels]:
                del series[labels]

    def merge(self, other: Totals) -> None:
        for family, series in other.counters.items():
            for labels, value in series.items():
                self.add_counter(family, labels, value)
        for labels, tally in other.histogram.items():
            if len(tally) == self.width:  # another process with other buckets cannot be summed; skip it
                self.add_tally(labels, tally)

    def to_json(self) -> dict[str, Any]:
        return {"counters": {family: [[list(map(list, labels)), value] for labels, value in series.items()]
                             for family, series in self.counters.items()},
                "histogram": [[list(map(list, labels)), tally] for labels, tally in self.histogram.items()]}

    @classmethod
    def from_json(cls, data: dict[str, Any], bucket_count: int) -> Totals:
        totals = cls(bucket_count)
        for family, series in data.get("counters", {}).items():
            if family in totals.counters:
                totals.counters[family] = {tuple(tuple(pair) for pair in labels): value for labels, value in series}
        totals.histogram = {tuple(tuple(pair) for pair in labels): tally for labels, tally in data.get("histogram", [])}
        return totals


class GatewayMetrics:
    """The metric families of API.md section 5.

    ``is_registered`` answers whether a tenant id may appear as a label value (the tenant registry's cheap,
    in-memory lookup).
    """

    def __init__(self, latency_buckets_ms: Sequence[float], is_registered: Callable[[str], bool]) -> None:
        self._is_registered = is_registered
        self._reasons: set[str] = set()
        self._bounds = [float(b) for b in sorted(latency_buckets_ms)]
        # observe() runs on every request, so it only tallies into plain dicts keyed by tuples; the tallies are
        # folded into the totals when metrics are read or published.
        self._pending_responses: dict[tuple[str, str, int], int] = {}
        self._pending_tenant: dict[tuple[str, int], int] = {}
        self._pending_durations: dict[tuple[str, str], list[float]] = {}
        self.own = Totals(len(self._bounds))
        self.others = Totals(len(self._bounds))  # the other processes' last published totals, summed
        self.others_active_instances = 0
        self._others_generation = 0
        self.version = 0  # bumps whenever the own totals change: whether there is anything new to publish
        self._changed: set[str] = {name for name, _, _ in FAMILIES}
        self._blocks: dict[str, str] = {}
        self._prefixes: dict[tuple[str, Labels], str] = {}
        # Per counter family: the sorted series (recomputed when series appear) and each series' last line.
        self._order: dict[str, tuple[tuple[int, int, int], list[Labels]]] = {}
        self._rendered: dict[str, dict[Labels, tuple[float, str, str]]] = {name: {} for name in COUNTER_FAMILIES}
        self._events = {
            telemetry.AUTH_FAILURE: AUTH_FAILURES,
            telemetry.TENANT_CONFLICT: CONFLICTS,
            telemetry.RATE_LIMITED: RATE_LIMITED,
            telemetry.EVENTLOG_APPEND: APPENDS,
            telemetry.RATE_LIMITER_ERROR: LIMITER_ERRORS,
        }

    @property
    def bucket_count(self) -> int:
        return len(self._bounds)

    def tenant_label(self, tenant_id: str | None) -> str:
        if tenant_id and self._is_registered(tenant_id):
            return tenant_id
        return UNKNOWN_TENANT

    def observe(self, observation: RequestObservation) -> None:
        self.observe_many((observation,))

    def observe_many(self, observations: Iterable[RequestObservation]) -> None:
        """Tally finished requests (one event-loop turn's worth at a time: the lookups are hoisted out of the
        per-request loop)."""
        responses, durations, tenants = self._pending_responses, self._pending_durations, self._pending_tenant
        bounds = self._bounds
        isfinite, bisect_left = math.isfinite, bisect.bisect_left
        for method, route, status, duration, tenant_id in observations:
            if method not in STANDARD_METHODS:
                method = "OTHER"
            key = (method, route, status)
            responses[key] = responses.get(key, 0) + 1
            # A NaN would land in _count but in no bucket, breaking "+Inf bucket == _count".
            if not isfinite(duration) or duration < 0.0:
                duration = 0.0
            series = (method, route)
            tally = durations.get(series)
            if tally is None:
                tally = durations[series] = [0.0] + [0] * (len(bounds) + 1)
            tally[0] += duration
            tally[1 + bisect_left(bounds, duration)] += 1
            if tenant_id is not None:
                tenant_key = (tenant_id, status)
                tenants[tenant_key] = tenants.get(tenant_key, 0) + 1

    def fold_pending(self) -> None:
        """Move the per-request tallies into the totals (done when reading, not per request)."""
        own, changed = self.own, self._changed
        durations, self._pending_durations = self._pending_durations, {}
        for (method, route), tally in durations.items():
            own.add_tally((("method", method), ("route", route)), tally)
            changed.add(DURATION)
        responses, self._pending_responses = self._pending_responses, {}
        for (method, route, status), count in responses.items():
            labels = (("method", method), ("route", route), ("status", str(status)))
            own.add_counter(REQUESTS, labels, count)
            changed.add(REQUESTS)
            if status >= 400:
                own.add_counter(ERRORS, labels, count)
                changed.add(ERRORS)
        tenant_counts, self._pending_tenant = self._pending_tenant, {}
        for (tenant_id, status), count in tenant_counts.items():
            tenant = self.tenant_label(tenant_id)
            if tenant != UNKNOWN_TENANT:
                own.add_counter(TENANT_REQUESTS, (("status", str(status)), ("tenant_id", tenant)), count)
                changed.add(TENANT_REQUESTS)
        if durations or responses or tenant_counts:
            self.version += 1

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop every series labelled with ``tenant_id`` (the tenant was purged; a new one may take the id)."""
        self._pending_tenant = {key: n for key, n in self._pending_tenant.items() if key[0] != tenant_id}
        label = ("tenant_id", tenant_id)
        self.own.drop_tenant(tenant_id)
        self.others.drop_tenant(tenant_id)
        self._prefixes = {key: text for key, text in self._prefixes.items() if label not in key[1]}
        for family in TENANT_FAMILIES:
            self._rendered[family] = {k: v for k, v in self._rendered[family].items() if label not in k}
            self._order.pop(family, None)
            self._changed.add(family)
        self.version += 1

    def count(self, name: str, labels: dict[str, str], value: float) -> bool:
        """Count a host event; return False for names this plugin does not know (ignored)."""
        family = self._events.get(name)
        if family is None or not value > 0:
            return False
        tenant = self.tenant_label(labels.get("tenant_id"))
        if name == telemetry.RATE_LIMITER_ERROR:
            outcome = labels.get("outcome")
            series: Labels = (("outcome", outcome if outcome in ("allowed", "rejected") else "OTHER"),)
        elif name == telemetry.AUTH_FAILURE:
            series = (("reason", self._reason_label(labels.get("reason", ""))), ("tenant_id", tenant))
        else:
            series = (("tenant_id", tenant),)
        self.own.add_counter(family, series, value)
        self._changed.add(family)
        self.version += 1
        return True

    def _reason_label(self, reason: str) -> str:
        if reason in self._reasons:
            return reason
        if len(self._reasons) < MAX_REASONS and _REASON.fullmatch(reason):
            self._reasons.add(reason)
            return reason
        return "OTHER"

    def set_others(self, others: Totals, active_instances: int) -> None:
        """The other processes' totals changed (see :mod:`.sharing`)."""
        self.others = others
        self.others_active_instances = active_instances
        self._others_generation += 1
        self._changed.update(COUNTER_FAMILIES)
        self._changed.add(DURATION)

    # --- reading ---------------------------------------------------------------------------------------------

    def _counter_series(self, family: str) -> list[tuple[Labels, float]]:
        own, others = self.own.counters[family], self.others.counters[family]
        if not others:
            return sorted(own.items())
        merged = dict(others)
        for labels, value in own.items():
            merged[labels] = merged.get(labels, 0) + value
        return sorted(merged.items())

    def _histogram_series(self) -> list[tuple[Labels, list[float]]]:
        own, others = self.own.histogram, self.others.histogram
        if not others:
            return sorted(own.items())
        merged = {labels: list(tally) for labels, tally in others.items()}
        for labels, tally in own.items():
            current = merged.get(labels)
            merged[labels] = list(tally) if current is None else [a + b for a, b in zip(current, tally, strict=True)]
        return sorted(merged.items())

    def _histogram_value(self, tally: Sequence[float]) -> HistogramValue:
        buckets = []
        cumulative = 0
        for bound, count in zip(self._bounds, tally[1:], strict=False):
            cumulative += int(count)
            buckets.append((bound, cumulative))
        total = cumulative + int(tally[-1])
        buckets.append((math.inf, total))  # +Inf is the observation count, so the two agree by construction
        return HistogramValue(buckets, total, tally[0])

    def _gauges(self, readings: GaugeReadings) -> dict[str, list[tuple[Labels, float]]]:
        gauges: dict[str, list[tuple[Labels, float]]] = {TENANTS: [], ACTIVE_INSTANCES: [], UPTIME: []}
        if readings.tenants_by_status is not None:
            gauges[TENANTS] = sorted(((("status", status),), float(readings.tenants_by_status.get(status, 0)))
                                     for status in TENANT_STATUSES)
        if readings.active_instances is not None:
            gauges[ACTIVE_INSTANCES] = [((), float(readings.active_instances + self.others_active_instances))]
        if readings.uptime_s is not None:
            gauges[UPTIME] = [((), round(readings.uptime_s, 3))]
        return gauges

    def families(self, readings: GaugeReadings, tenant_id: str | None = None) -> list[Family]:
        """A snapshot of every family, in exposition order; with ``tenant_id`` only that tenant's series."""
        self.fold_pending()
        gauges = self._gauges(readings)
        result = []
        for name, help_text, kind in FAMILIES:
            if tenant_id is not None and name not in TENANT_FAMILIES:
                continue
            samples: list[Sample]
            if kind == "histogram":
                samples = [Sample(dict(labels), self._histogram_value(tally))
                           for labels, tally in self._histogram_series()]
            elif kind == "gauge":
                samples = [Sample(dict(labels), value) for labels, value in gauges[name]]
            else:
                samples = [Sample(dict(labels), value) for labels, value in self._counter_series(name)
                           if tenant_id is None or dict(labels).get("tenant_id") == tenant_id]
            result.append(Family(name, help_text, kind, samples))
        return result

    def render_text(self, readings: GaugeReadings) -> bytes:
        """The whole exposition (format 0.0.4); families that did not change come from the cache."""
        self.fold_pending()
        gauges = self._gauges(readings)
        blocks = self._blocks
        for name, help_text, kind in FAMILIES:
            if kind == "gauge":
                blocks[name] = self._block(name, help_text, kind, self._lines(name, gauges[name]))
            elif name in self._changed or name not in blocks:
                lines = self._histogram_lines(name) if kind == "histogram" else self._counter_lines(name)
                blocks[name] = self._block(name, help_text, kind, lines)
        self._changed.clear()
        return "".join(blocks[name] for name, _, _ in FAMILIES).encode("utf-8")

    @staticmethod
    def _block(name: str, help_text: str, kind: str, lines: list[str]) -> str:
        return f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} {kind}\n" + "".join(lines)

    def _prefix(self, name: str, labels: Labels) -> str:
        key = (name, labels)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = f"{name}{label_text(labels)} "
        return prefix

    def _counter_lines(self, name: str) -> list[str]:
        """Lines of a counter family; a series whose value did not change keeps its line."""
        own, others = self.own.counters[name], self.others.counters[name]
        shape = (len(own), self._others_generation, len(others))
        known = self._order.get(name)
        if known is None or known[0] != shape:
            known = self._order[name] = (shape, sorted(own.keys() | others.keys()))
        rendered = self._rendered[name]
        lines: list[str] = []
        append = lines.append
        for labels in known[1]:
            value = own.get(labels, 0) + others.get(labels, 0) if others else own[labels]
            cached = rendered.get(labels)
            if cached is None:
                prefix = self._prefix(name, labels)
                cached = rendered[labels] = (value, f"{prefix}{format_number(value)}\n", prefix)
            elif cached[0] != value:
                cached = rendered[labels] = (value, f"{cached[2]}{format_number(value)}\n", cached[2])
            append(cached[1])
        return lines

    def _lines(self, name: str, series: Iterable[tuple[Labels, float]]) -> list[str]:
        return [f"{self._prefix(name, labels)}{format_number(value)}\n" for labels, value in series]

    def _histogram_lines(self, name: str) -> list[str]:
        lines = []
        bucket_name, sum_name, count_name = f"{name}_bucket", f"{name}_sum", f"{name}_count"
        for labels, tally in self._histogram_series():
            value = self._histogram_value(tally)
            for bound, count in value.buckets:
                lines.append(f"{self._prefix(bucket_name, (*labels, ('le', format_number(bound))))}{count}\n")
            lines.append(f"{self._prefix(sum_name, labels)}{format_number(value.sum)}\n")
            lines.append(f"{self._prefix(count_name, labels)}{value.count}\n")
        return lines
