"""Write a metrics snapshot as Prometheus text (format 0.0.4) or as the JSON document of API.md section 5.

The full exposition is rendered incrementally by :meth:`GatewayMetrics.render_text`; this renderer serves the
per-tenant views and the JSON document.

Label values and HELP text are escaped (a ``"``, ``\\`` or newline would break the exposition), floats are
written as Prometheus reads them (``+Inf``, ``NaN``), and families without samples still get HELP/TYPE.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from libervia_plugins.telemetry_prometheus.metrics import Family, HistogramValue, escape_help, format_number, label_text

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


def _labels(labels: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    pairs = sorted(labels.items())
    if extra is not None:
        pairs.append(extra)
    return label_text(pairs)


def render_text(families: Iterable[Family]) -> bytes:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            value = sample.value
            if isinstance(value, HistogramValue):
                for bound, count in value.buckets:
                    le = ("le", format_number(bound))
                    lines.append(f"{family.name}_bucket{_labels(sample.labels, le)} {count}")
                lines.append(f"{family.name}_sum{_labels(sample.labels)} {format_number(value.sum)}")
                lines.append(f"{family.name}_count{_labels(sample.labels)} {value.count}")
            else:
                lines.append(f"{family.name}{_labels(sample.labels)} {format_number(value)}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _json_value(value: float | HistogramValue) -> Any:
    if isinstance(value, HistogramValue):
        return {
            "buckets": [{"le": format_number(bound), "count": count} for bound, count in value.buckets],
            "count": value.count,
            "sum": value.sum,
        }
    return int(value) if float(value).is_integer() else value


def render_json(families: Iterable[Family], timestamp: str) -> bytes:
    return orjson.dumps({
        "timestamp": timestamp,
        "metrics": [
            {
                "name": family.name,
                "help": family.help,
                "type": family.type,
                "values": [{"labels": s.labels, "value": _json_value(s.value)} for s in family.samples],
            }
            for family in families
        ],
    })
