"""A purged tenant's series leave the machine totals, including what dead processes left in retired.json (they
came back at the next collect: a re-created tenant of the same id started from its predecessor's counts)."""

from __future__ import annotations

from pathlib import Path

import orjson

from libervia_plugins.telemetry_prometheus.metrics import APPENDS, GatewayMetrics, GaugeReadings, Totals
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


def test_forgetting_a_tenant_also_drops_its_rendered_label_text() -> None:
    metrics = GatewayMetrics(BUCKETS, lambda tenant_id: True)
    metrics.own.add_counter(APPENDS, (("tenant_id", "tdel"),), 1)
    metrics.own.add_counter(APPENDS, (("tenant_id", "kept"),), 1)
    metrics.render_text(GaugeReadings(None, None, None))
    assert any(("tenant_id", "tdel") in labels for _, labels in metrics._prefixes)
    metrics.forget_tenant("tdel")
    assert not any(("tenant_id", "tdel") in labels for _, labels in metrics._prefixes)
    assert any(("tenant_id", "kept") in labels for _, labels in metrics._prefixes)


def test_a_forgotten_tenant_does_not_come_back_from_a_dead_process_not_folded_yet(tmp_path: Path) -> None:
    """A process that died after start-up left a file nobody folded: it was still counted after the purge."""
    shared = SharedTotals(tmp_path, len(BUCKETS))
    dead = Totals(len(BUCKETS))
    dead.add_counter(APPENDS, (("tenant_id", "tdel"),), 5)
    dead.add_counter(APPENDS, (("tenant_id", "kept"),), 2)
    (tmp_path / "999999999-dead.json").write_bytes(orjson.dumps({"pid": 999_999_999, "buckets": len(BUCKETS),
                                                                 "active_instances": 0, **dead.to_json()}))
    shared.forget_tenant("tdel")
    metrics = GatewayMetrics(BUCKETS, lambda tenant_id: True)
    others, _ = shared.collect()
    assert others is not None
    metrics.set_others(others, 0)
    assert metrics.others.counters[APPENDS] == {(("tenant_id", "kept"),): 2}
