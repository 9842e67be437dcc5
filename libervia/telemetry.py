"""What the host tells telemetry plugins.

The host reports every finished request (:class:`RequestObservation`) and named counter events through the
telemetry hooks; it never talks to a metrics library itself, so telemetry can be replaced or switched off.
"""

from __future__ import annotations

from typing import NamedTuple


class RequestObservation(NamedTuple):
    """One finished request. (A NamedTuple: one is built per request, and a frozen dataclass costs several times
    more to construct.)"""

    method: str
    route: str              # the route template (``/admin/tenants/{id}``), or ``unmatched``; never a raw path
    status: int
    duration_ms: float
    tenant_id: str | None   # only a registered tenant's id, else None


# Names of the counter events the host emits through ``libervia_count_event`` and their labels.
AUTH_FAILURE = "auth_failure"          # labels: reason, tenant_id (registered tenant or "unknown")
TENANT_CONFLICT = "tenant_conflict"    # labels: tenant_id
RATE_LIMITED = "rate_limited"          # labels: tenant_id
EVENTLOG_APPEND = "eventlog_append"    # labels: tenant_id; value = events appended
RATE_LIMITER_ERROR = "rate_limiter_error"  # labels: outcome ("allowed" fail-open, "rejected" fail-closed)
