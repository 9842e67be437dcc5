"""Where the embedded store keeps a tenant's files under ``BASE_DIR``, and the durable file primitives.

Layout (``BASE_DIR`` is shared by every gateway process on the machine)::

    tenants/<id>/eventlog/events.jsonl    the log, one canonical JSON entry per line, append-only
    tenants/<id>/eventlog/events.lock     flock'd by writers; also holds the pending-write record
    tenants/<id>/eventlog/quarantine/     torn tails moved aside, never deleted
    tenants/<id>/snapshots/latest.snapshot   the newest Core snapshot (header line + opaque state)
    checkpoints/<id>.jsonl                signed checkpoints, outside the tenant's directory
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from libervia.durable import fsync_dir
from libervia.tenants.ids import tenant_data_dir, tenant_id_problem

FILE_MODE = 0o640


# --- layout ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TenantPaths:
    tenant_dir: Path
    eventlog_dir: Path
    events: Path
    lock: Path
    quarantine: Path
    snapshots: Path
    checkpoints: Path


class FileLayout:
    """Where a tenant's files live under ``BASE_DIR``, refusing ids and symlinks that would lead outside it."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.tenants_root = self.base_dir / "tenants"
        self.checkpoints_root = self.base_dir / "checkpoints"

    def tenant(self, tenant_id: str, *, create: bool) -> TenantPaths:
        """The tenant's paths; with ``create`` the directories are made (durably). Raises ``ValueError`` for an id
        that breaks the tenant id rule, or a tenant directory or file that is a symlink (it could lead into
        another tenant's data or out of ``BASE_DIR``)."""
        if create:
            ensure_dir(self.tenants_root)
            ensure_dir(self.checkpoints_root)
        tenant_dir = tenant_data_dir(self.base_dir, tenant_id)
        _plain_child(tenant_dir.parent, tenant_id, create)
        eventlog_dir = _plain_child(tenant_dir, "eventlog", create)
        checkpoints_dir = self.checkpoints_root.resolve()
        return TenantPaths(
            tenant_dir=tenant_dir,
            eventlog_dir=eventlog_dir,
            events=_plain_child(eventlog_dir, "events.jsonl", False),
            lock=_plain_child(eventlog_dir, "events.lock", False),
            quarantine=_plain_child(eventlog_dir, "quarantine", False),
            snapshots=_plain_child(tenant_dir, "snapshots", False),
            checkpoints=_plain_child(checkpoints_dir, f"{tenant_id}.jsonl", False),
        )

    def tenants_with_logs(self) -> list[str]:
        if not self.tenants_root.is_dir():
            return []
        return sorted(p.name for p in self.tenants_root.iterdir()
                      if tenant_id_problem(p.name) is None and (p / "eventlog" / "events.jsonl").is_file())

    def known_tenants(self) -> list[str]:
        """Tenants with a log or with checkpoints (a log deleted outright still has its checkpoints)."""
        names = set(self.tenants_with_logs())
        if self.checkpoints_root.is_dir():
            names.update(p.stem for p in self.checkpoints_root.glob("*.jsonl") if tenant_id_problem(p.stem) is None)
        return sorted(names)


def _plain_child(parent: Path, name: str, create_dir: bool) -> Path:
    child = parent / name
    if child.is_symlink():
        raise ValueError(f"{child} is a symlink; tenant data must stay inside BASE_DIR")
    if create_dir:
        ensure_dir(child)
    return child


# --- durable file primitives -------------------------------------------------------------------------------------

def ensure_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) so that its existence survives a crash."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
