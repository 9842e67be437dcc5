"""The cached, incremental exposition is always the full rendering of the current totals.

After every batch of random updates (new series, changed values, other processes' totals replaced), the text a
scrape gets equals a from-scratch rendering of the same snapshot, and the reference parser reads it.
"""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from libervia import telemetry
from libervia.telemetry import RequestObservation
from libervia_plugins.telemetry_prometheus import exposition
from libervia_plugins.telemetry_prometheus.metrics import GatewayMetrics, GaugeReadings, Totals

READINGS = GaugeReadings({"active": 3, "suspended": 1}, 2, 12.5)


def test_incremental_rendering_equals_a_full_rendering() -> None:
    rng = random.Random(7)
    tenants = [f"t{i:03d}" for i in range(40)]
    metrics = GatewayMetrics([5, 50, 500], lambda tenant: tenant.startswith("t"))
    for round_no in range(60):
        for _ in range(rng.randint(0, 30)):
            metrics.observe(RequestObservation(rng.choice(["GET", "POST", "BREW"]), rng.choice(["/a", "/b/{id}"]),
                                               rng.choice([200, 201, 404, 500]), rng.expovariate(0.02),
                                               rng.choice([*tenants, None, "ghost"])))
        for _ in range(rng.randint(0, 5)):
            metrics.count(rng.choice([telemetry.EVENTLOG_APPEND, telemetry.RATE_LIMITED, telemetry.AUTH_FAILURE]),
                          {"tenant_id": rng.choice(tenants), "reason": "INVALID_TOKEN"}, rng.randint(1, 9))
        if round_no % 7 == 3:
            others = Totals(metrics.bucket_count)
            others.add_counter("libervia_eventlog_appends_total", (("tenant_id", rng.choice(tenants)),), 5)
            others.add_tally((("method", "GET"), ("route", "/a")), [10.0, 1, 0, 1, 0])
            metrics.set_others(others, rng.randint(0, 4))
        incremental = metrics.render_text(READINGS)
        assert incremental == exposition.render_text(metrics.families(READINGS))
        assert {f.name for f in text_string_to_metric_families(incremental.decode())}
