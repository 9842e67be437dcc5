"""The tenant registry as one JSON file under ``BASE_DIR/config``.

Every update takes an exclusive ``flock`` on ``tenants.lock``, re-reads the file, applies the change, writes a
temporary file, fsyncs it, renames it over the old one and fsyncs the directory. A crash at any point leaves the
old or the new file, never a mix. Readers never lock: ``rename`` is atomic. The version token is the file's
inode, size and mtime, which changes with every rename, so other processes notice an update with one ``stat``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from libervia.durable import exclusive_lock, fsync_dir, replace_durably
from libervia.storage import CorruptStoreError, StorageError
from libervia.tenants.registry import empty_document

T = TypeVar("T")
PURGE_AREA = "purged"  # where purged tenants' files go: nothing reads it


def write_json_durably(path: Path, data: Any) -> None:
    replace_durably(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


class FileRegistryStore:
    def __init__(self, base_dir: Path) -> None:
        self.config_dir = base_dir / "config"
        self.path = self.config_dir / "tenants.json"
        self.lock_path = self.config_dir / "tenants.lock"
        self.usage_path = self.config_dir / "key_usage.json"
        # One update at a time inside this process; the flock orders us against other processes.
        self._local = asyncio.Lock()

    def prepare(self) -> None:
        """Create the directory and an empty registry if there is none; refuse a corrupt one, untouched."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.lock_path):
            self._remove_abandoned_temp_files()
            if not self.path.exists():
                write_json_durably(self.path, empty_document())
        self._read_sync()

    def _read_sync(self) -> tuple[str, dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            return "missing", empty_document()
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), dict):
                raise ValueError("expected an object with a 'tenants' object")
        except ValueError as exc:
            raise CorruptStoreError(
                f"tenant registry {self.path} is corrupt ({exc}); it was left untouched - "
                "restore it from a backup (scripts/restore_backup.sh) or repair it by hand"
            ) from exc
        return self._version_of(stat), doc

    @staticmethod
    def _version_of(stat: os.stat_result) -> str:
        return f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"

    async def read(self) -> tuple[str, dict[str, Any]]:
        return await asyncio.to_thread(self._read_sync)

    async def version(self) -> str:
        try:
            return self._version_of(os.stat(self.path))
        except FileNotFoundError:
            return "missing"

    def _remove_abandoned_temp_files(self) -> None:
        """Temp files of writers killed mid-write. Only called under the lock, so none is in use."""
        for leftover in self.config_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    def _update_sync(self, mutate: Callable[[dict[str, Any]], T]) -> tuple[T, str, dict[str, Any]]:
        with exclusive_lock(self.lock_path):
            self._remove_abandoned_temp_files()
            _, doc = self._read_sync()
            value = mutate(doc)
            write_json_durably(self.path, doc)
            return value, self._version_of(os.stat(self.path)), doc

    async def update(self, mutate: Callable[[dict[str, Any]], T]) -> tuple[T, str, dict[str, Any]]:
        async with self._local:
            return await asyncio.to_thread(self._update_sync, mutate)

    def _record_usage_sync(self, usage: Mapping[str, str]) -> None:
        with exclusive_lock(self.lock_path):
            current = self._usage_sync()
            for key, moment in usage.items():
                if moment > current.get(key, ""):
                    current[key] = moment
            write_json_durably(self.usage_path, current)

    def _usage_sync(self) -> dict[str, str]:
        try:
            data = orjson.loads(self.usage_path.read_bytes())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            # Usage times are advisory; a lost or broken file only loses lastUsedAt values.
            return {}

    def _purge_data_sync(self, tenant_id: str, stamp: str) -> str | None:
        """Move the tenant's directory and checkpoints to ``BASE_DIR/purged/<id>-<stamp>/``: out of every path the
        gateway reads, on the same file system so that each move is one atomic rename."""
        base = self.config_dir.parent
        sources = [(base / "tenants" / tenant_id, "tenant"),
                   (base / "checkpoints" / f"{tenant_id}.jsonl", "checkpoints.jsonl")]
        present = [(path, name) for path, name in sources if path.exists() or path.is_symlink()]
        if not present:
            return None
        target = base / PURGE_AREA / f"{tenant_id}-{stamp}"
        target.mkdir(parents=True, exist_ok=False)
        for path, name in present:
            os.rename(path, target / name)
            fsync_dir(path.parent)
        fsync_dir(target)
        fsync_dir(target.parent)
        return str(target)

    async def purge_tenant_data(self, tenant_id: str, stamp: str) -> str | None:
        """Remove the tenant's event log, snapshots and checkpoints; where they went, or None if there were none."""
        async with self._local:
            return await asyncio.to_thread(self._purge_data_sync, tenant_id, stamp)

    async def record_key_usage(self, usage: Mapping[str, str]) -> None:
        await asyncio.to_thread(self._record_usage_sync, usage)

    async def key_usage(self) -> dict[str, str]:
        return await asyncio.to_thread(self._usage_sync)
