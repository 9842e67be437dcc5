"""Write a metrics snapshot as Prometheus text (format 0.0.4) or as the JSON document of API.md section 5.

The plugin renders itself instead of using aioprometheus's ``TextFormatter``, which (23.12) writes label values
and HELP text without escaping (a ``"``, ``\\`` or newline breaks the exposition), cannot restrict output to
one tenant's series, writes floats as Python does (``inf``, ``nan``) and has no JSON format. It does write
HELP/TYPE for families without samples, as required; this renderer keeps that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from libervia_plugins.telemetry_prometheus.metrics import Family, HistogramValue

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


def format_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    pairs = sorted(labels.items())
    if extra is not None:
        pairs.append(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in pairs) + "}"


def render_text(families: Iterable[Family]) -> bytes:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
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
