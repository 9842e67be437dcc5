"""Operational health over a recent window: ``GET /internal/health/operational``.

Counters since process start hide a spike that began a minute ago, so the plugin also keeps the last
``window_s`` seconds in ``bucket_s`` slots of a ring (30 slots of 10 s by default). A slot older than the window
is reset when its index comes round again; reading sums the slots still inside the window. Recording is two
integer increments and, for a request, a bisect into the latency bounds.

Each check compares a value with its ``degraded`` and ``critical`` thresholds and names the alert of API.md
section 9 that it corresponds to; the overall status is the worst check. Rate and percentile checks need
``min_requests`` requests in the window to judge (one failed request out of two is not an error-rate spike).
"""

from __future__ import annotations

import bisect
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from libervia import telemetry

OK, DEGRADED, CRITICAL = "OK", "DEGRADED", "CRITICAL"
_SEVERITY = {OK: 0, DEGRADED: 1, CRITICAL: 2}


@dataclass(slots=True)
class _Slot:
    epoch: int = -1
    requests: int = 0
    server_errors: int = 0
    auth_failures: float = 0
    conflicts: float = 0
    rate_limited: float = 0
    latency: list[int] = field(default_factory=list)  # per latency bucket, not cumulative; last = overflow


@dataclass(frozen=True, slots=True)
class WindowTotals:
    span_s: float  # how much time the window covers so far (less than window_s just after start)
    requests: int
    server_errors: int
    auth_failures: float
    conflicts: float
    rate_limited: float
    latency: list[int]


class RecentWindow:
    def __init__(self, window_s: int, bucket_s: int, latency_bounds_ms: Sequence[float],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket_s = bucket_s
        self._window_s = window_s
        self._size = max(1, window_s // bucket_s)
        self._bounds = sorted(float(b) for b in latency_bounds_ms)
        self._clock = clock
        self._started = clock()
        self._slots = [_Slot(latency=[0] * (len(self._bounds) + 1)) for _ in range(self._size)]
        self._events = {
            telemetry.AUTH_FAILURE: "auth_failures",
            telemetry.TENANT_CONFLICT: "conflicts",
            telemetry.RATE_LIMITED: "rate_limited",
        }

    @property
    def latency_bounds_ms(self) -> list[float]:
        return list(self._bounds)

    def _current(self) -> _Slot:
        epoch = int(self._clock() // self._bucket_s)
        slot = self._slots[epoch % self._size]
        if slot.epoch != epoch:
            slot.epoch = epoch
            slot.requests = slot.server_errors = 0
            slot.auth_failures = slot.conflicts = slot.rate_limited = 0
            slot.latency = [0] * (len(self._bounds) + 1)
        return slot

    def record_requests(self, finished: Iterable[tuple[int, float]]) -> None:
        """Requests that finished together (one event-loop turn) land in one slot, looked up once."""
        slot = self._current()
        latency, bounds = slot.latency, self._bounds
        for status, duration_ms in finished:
            slot.requests += 1
            if status >= 500:
                slot.server_errors += 1
            latency[bisect.bisect_left(bounds, duration_ms)] += 1

    def record_event(self, name: str, value: float) -> None:
        attribute = self._events.get(name)
        if attribute is not None:
            slot = self._current()
            setattr(slot, attribute, getattr(slot, attribute) + value)

    def totals(self) -> WindowTotals:
        now = self._clock()
        newest = int(now // self._bucket_s)
        live = [s for s in self._slots if newest - self._size < s.epoch <= newest]
        latency = [sum(column) for column in zip(*(s.latency for s in live), strict=True)] if live else []
        return WindowTotals(
            span_s=min(float(self._window_s), max(now - self._started, float(self._bucket_s))),
            requests=sum(s.requests for s in live),
            server_errors=sum(s.server_errors for s in live),
            auth_failures=sum(s.auth_failures for s in live),
            conflicts=sum(s.conflicts for s in live),
            rate_limited=sum(s.rate_limited for s in live),
            latency=latency or [0] * (len(self._bounds) + 1),
        )


def percentile_ms(bounds: Sequence[float], counts: Sequence[int], quantile: float) -> float | None:
    """Estimate a quantile from bucket counts by linear interpolation inside the bucket (as Prometheus's
    ``histogram_quantile``). A quantile that falls in the overflow bucket is reported as the highest bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if index == len(bounds):
                return float(bounds[-1]) if bounds else math.inf
            lower = 0.0 if index == 0 else float(bounds[index - 1])
            return lower + (float(bounds[index]) - lower) * (rank - seen) / count
        seen += count
    return float(bounds[-1]) if bounds else math.inf


def rss_mb() -> float:
    """Resident memory of this process in MiB: current RSS from /proc, else the peak from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _grade(value: float | None, thresholds: dict[str, float]) -> str:
    if value is None:
        return OK
    if value > thresholds["critical"]:
        return CRITICAL
    if value > thresholds["degraded"]:
        return DEGRADED
    return OK


def evaluate(totals: WindowTotals, bounds: Sequence[float], config: dict[str, Any], memory_mb: float) -> dict[str, Any]:
    """The body of ``/internal/health/operational`` (without its time stamp)."""
    per_minute = 60.0 / totals.span_s
    enough = totals.requests >= config["min_requests"]
    values: dict[str, tuple[str, float | None, str]] = {
        # check name: (alert, value or None when there is too little traffic to judge, unit)
        "error_rate": ("ERROR_RATE_SPIKE", totals.server_errors / totals.requests if enough else None, "ratio"),
        "p95_latency": ("HIGH_LATENCY", percentile_ms(bounds, totals.latency, 0.95) if enough else None, "ms"),
        "auth_failures": ("AUTH_FAILURE_SPIKE", totals.auth_failures * per_minute, "per_minute"),
        "tenant_conflicts": ("TENANT_CONFLICT_SPIKE", totals.conflicts * per_minute, "per_minute"),
        "rate_limited_share": ("RATE_LIMIT_ABUSE", totals.rate_limited / totals.requests if enough else None,
                               "ratio"),
        "memory": ("MEMORY_PRESSURE", memory_mb, "MiB"),
    }
    checks = {}
    for name, (alert, value, unit) in values.items():
        thresholds = config["thresholds"][name]
        checks[name] = {
            "status": _grade(value, thresholds),
            "alert": alert,
            "value": None if value is None else round(value, 4),
            "unit": unit,
            "degraded_above": thresholds["degraded"],
            "critical_above": thresholds["critical"],
        }
    overall = max((c["status"] for c in checks.values()), key=_SEVERITY.__getitem__)
    return {
        "status": overall,
        "window_s": round(totals.span_s, 3),
        "requests": totals.requests,
        "alerts": [c["alert"] for c in checks.values() if c["status"] != OK],
        "checks": checks,
    }
