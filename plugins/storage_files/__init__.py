"""``storage_files``: the embedded default storage, plain files under ``BASE_DIR``.

Several gateway processes may share one ``BASE_DIR`` on one file system: the registry and each event log are
guarded by ``flock`` and re-read under the lock, so processes never overwrite or fork each other's data.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from libervia import hookimpl
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.gateway import Gateway
from libervia.schemas import load_schema
from libervia.settings import ensure_writable_dir, free_disk_mb
from libervia.storage import Checkpoint, CheckResult
from libervia_plugins.storage_files import importing
from libervia_plugins.storage_files.archiving import FileArchiver
from libervia_plugins.storage_files.eventlog import FileEventStore
from libervia_plugins.storage_files.registry import FileRegistryStore


class FilesStorage:
    name = "storage_files"

    def __init__(self, base_dir: Path, signer: CheckpointSigner, checkpoint_every: int, min_free_disk_mb: int):
        self.base_dir = base_dir
        self.min_free_disk_mb = min_free_disk_mb
        self.registry = FileRegistryStore(base_dir)
        self.events = FileEventStore(base_dir, signer, checkpoint_every=checkpoint_every)
        # Backup, restore and migration (libervia.storage.LogImporter and FileArchiving).
        self.archiver = FileArchiver(base_dir)
        self.occupied = self.archiver.occupied
        self.staging_parent = self.archiver.staging_parent
        self.backup_files = self.archiver.backup_files
        self.restore_files = self.archiver.restore_files

    async def import_log(self, tenant_id: str, entries: AsyncIterator[dict[str, Any]],
                         checkpoints: Sequence[Checkpoint]) -> int:
        return await importing.import_log(self.events, tenant_id, entries, checkpoints)

    async def set_aside(self) -> str:
        await self.events.close()
        self.events = FileEventStore(self.base_dir, self.events.signer, checkpoint_every=self.events.checkpoint_every)
        staged = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".restore-", dir=self.base_dir))
        aside = await asyncio.to_thread(self.restore_files, staged)
        await self.start()
        return str(aside or self.base_dir)

    async def start(self) -> None:
        await asyncio.to_thread(self.registry.prepare)
        (self.base_dir / "tenants").mkdir(parents=True, exist_ok=True)

    async def check_ready(self) -> dict[str, CheckResult]:
        problem = await asyncio.to_thread(ensure_writable_dir, self.base_dir)
        checks = {"storage": CheckResult(problem is None, problem or f"{self.base_dir} writable")}
        if problem is None:
            free = free_disk_mb(self.base_dir)
            ok = free >= self.min_free_disk_mb
            checks["disk"] = CheckResult(ok, f"{free:.0f} MB free, {self.min_free_disk_mb} MB required",
                                         {"free_mb": round(free), "min_free_mb": self.min_free_disk_mb})
        return checks

    async def close(self) -> None:
        close = getattr(self.events, "close", None)
        if close is not None:
            await close()


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema("plugins/storage_files")


@hookimpl
def libervia_storage(gateway: Gateway) -> FilesStorage:
    settings = gateway.settings
    return FilesStorage(settings.base_dir, gateway.checkpoint_signer, int(settings.get("checkpoint_every")),
                        settings.min_free_disk_mb)
