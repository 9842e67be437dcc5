"""Gateway-wide runtime views shared by the runtime admin routes and the query panel.

``/admin/instances`` and ``/admin/query/instances`` answer the same document, and so do ``/admin/metrics`` and
``/admin/query/metrics``: one definition here, in the host, so that no built-in plugin imports another. Each
document carries the v1 fields (``instances[].tenantId``, ``total``, ``activeInstances`` as the list of running
tenant ids; ``totalTenants``, ``activeTenants``, ``suspendedTenants``) beside the gateway's own.
"""

from __future__ import annotations

import os
import resource
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from libervia import context
from libervia.clock import now_iso, parse_iso
from libervia.responses import json_response

if TYPE_CHECKING:
    from libervia.gateway import Gateway


def _seconds_since(timestamp: str | None, now: datetime) -> float | None:
    if not timestamp:
        return None
    return round((now - parse_iso(timestamp)).total_seconds(), 3)


def instances_document(gateway: Gateway) -> dict[str, Any]:
    runtime = gateway.runtime
    now = datetime.now(UTC)
    instances = []
    for info in runtime.instances():
        instances.append({**info, "tenantId": info["tenant"], "uptime": _seconds_since(info["startedAt"], now),
                          "lastActivity": info["lastUsedAt"]})
    return {"instances": instances, "count": len(instances), "total": len(instances), **runtime.stats(),
            "activeCount": runtime.active_count(),
            "activeInstances": [info["tenant"] for info in instances]}


def metrics_document(gateway: Gateway) -> dict[str, Any]:
    counts = gateway.registry.counts_by_status()
    return {**gateway.runtime.metrics(), "totalTenants": counts.get("active", 0) + counts.get("suspended", 0),
            "activeTenants": counts.get("active", 0), "suspendedTenants": counts.get("suspended", 0)}


def _memory() -> dict[str, int]:
    """v1's ``memory`` block. Python has no JS heap: ``heapTotal`` is the process's data segment, ``heapUsed``
    its resident set (both from ``/proc/self/statm`` where it exists), ``external`` is 0."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        with open("/proc/self/statm") as statm:
            fields = [int(part) for part in statm.read().split()]
        rss, data = fields[1] * page, fields[5] * page
    except (OSError, ValueError, IndexError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        data = rss
    return {"heapUsed": rss, "heapTotal": max(data, rss), "external": 0, "rss": rss}


def v1_metrics_summary(gateway: Gateway) -> dict[str, Any]:
    """``GET /metrics`` in v1's shape."""
    counts = gateway.registry.counts_by_status()
    return {"timestamp": now_iso(), "uptime": round(gateway.uptime_s(), 3), "memory": _memory(),
            "tenants": {"registered": counts.get("active", 0) + counts.get("suspended", 0),
                        "active": counts.get("active", 0), "suspended": counts.get("suspended", 0)},
            "instances": {"active": gateway.runtime.active_count()}}


async def instances_view(request: web.Request) -> web.Response:
    """Handler of ``/admin/instances`` and ``/admin/query/instances``."""
    return json_response(instances_document(context.gateway(request)))


async def metrics_view(request: web.Request) -> web.Response:
    """Handler of ``/admin/metrics`` and ``/admin/query/metrics``."""
    return json_response(metrics_document(context.gateway(request)))
