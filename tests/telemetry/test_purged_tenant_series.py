"""A purged tenant's series leave the machine totals, including what dead processes left in retired.json (they
came back at the next collect: a re-created tenant of the same id started from its predecessor's counts)."""

from __future__ import annotations

from pathlib import Path

import orjson

from libervia_plugins.telemetry_prometheus.metrics import APPENDS, GatewayMetrics, Totals
from libervia_plugins.telemetry_prometheus.sharing import SharedTotals

BUCKETS = [5.0, 50.0, 500.0]


def test_a_forgotten_tenant_does_not_come_back_from_a_dead_process_share(tmp_path: Path) -> None:
    dead = Totals(len(BUCKETS))
    dead.add_counter(APPENDS, (("tenant_id", "tdel"),), 5)
    dead.add_counter(APPENDS, (("tenant_id", "kept"),), 2)
    (tmp_path / "999999999-dead.json").write_bytes(orjson.dumps({"pid": 999_999_999, "buckets": len(BUCKETS),
                                                                 "active_instances": 0, **dead.to_json()}))
    shared = SharedTotals(tmp_path, len(BUCKETS))
    shared.retire_dead()
    metrics = GatewayMetrics(BUCKETS, lambda tenant_id: True)
    others, _ = shared.collect()
    assert others is not None
    metrics.set_others(others, 0)
    assert metrics.others.counters[APPENDS] == {(("tenant_id", "tdel"),): 5, (("tenant_id", "kept"),): 2}

    metrics.forget_tenant("tdel")
    shared.forget_tenant("tdel")
    others, _ = shared.collect()
    assert others is not None
    metrics.set_others(others, 0)
    assert metrics.others.counters[APPENDS] == {(("tenant_id", "kept"),): 2}
