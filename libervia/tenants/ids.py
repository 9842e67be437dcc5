"""Tenant ids: the one rule of the HTTP contract, and the data directory that an id may name."""

from __future__ import annotations

import re
from pathlib import Path

from libervia.errors import bad_request

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
RESERVED_IDS = frozenset(
    "admin system config backup logs tenants api public private internal root null undefined".split()
)
MIN_LENGTH = 3
MAX_LENGTH = 50


def normalize_tenant_id(raw: str) -> str:
    return raw.strip().lower()


def tenant_id_problem(tenant_id: str) -> str | None:
    """Why ``tenant_id`` (already normalised) is not acceptable, or None."""
    if not MIN_LENGTH <= len(tenant_id) <= MAX_LENGTH:
        return f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long"
    if not TENANT_ID_PATTERN.match(tenant_id):
        return ("may hold only lower-case letters, digits and single hyphens, "
                "and must start and end with a letter or digit")
    if tenant_id in RESERVED_IDS:
        return f"{tenant_id!r} is reserved"
    return None


def parse_tenant_id(raw: str) -> str:
    """Normalise and check a tenant id from a client; 400 ``INVALID_TENANT_ID`` when it breaks the rule."""
    tenant_id = normalize_tenant_id(raw)
    problem = tenant_id_problem(tenant_id)
    if problem:
        raise bad_request("INVALID_TENANT_ID", f"Invalid tenant id: it {problem}.")
    return tenant_id


def tenant_data_dir(base_dir: Path, tenant_id: str) -> Path:
    """The tenant's directory, proven to resolve inside ``BASE_DIR/tenants`` even through symlinks."""
    problem = tenant_id_problem(tenant_id)
    if problem:
        raise ValueError(f"invalid tenant id {tenant_id!r}: {problem}")
    root = (base_dir / "tenants").resolve()
    if (root / tenant_id).is_symlink():
        # Even a link that stays inside BASE_DIR could point at another tenant's data.
        raise ValueError(f"tenant directory for {tenant_id!r} is a symlink; it resolves outside {root}/{tenant_id}")
    candidate = (root / tenant_id).resolve()
    if candidate.parent != root:
        raise ValueError(f"tenant directory for {tenant_id!r} resolves outside {root}")
    return candidate
