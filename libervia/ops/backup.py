"""``libervia backup``: one consistent, signed archive of the configured store, taken while gateways keep serving.

The store provides the content, in the archive layout of :mod:`libervia.ops.archive`: a store that keeps files
(:class:`~libervia.storage.FileArchiving`, the embedded store) hands over its files as they are; any other store
is read through the storage protocol (:mod:`libervia.ops.transfer`, which says why that is consistent). Either
way this module streams the members into a tar.gz, hashes each into the manifest, signs it, and publishes the
archive under its final name only once it is complete and fsynced.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from libervia import __version__
from libervia.clock import format_iso
from libervia.durable import fsync_dir
from libervia.ops.archive import (
    FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    CountingReader,
    byte_progress,
    checked_relpath,
    data_member,
    sign_manifest,
)
from libervia.ops.transfer import export_store
from libervia.storage import FileArchiving, Storage, StorageError


class BackupError(Exception):
    """The backup cannot be taken (not a BASE_DIR, unreadable files, the store unreachable)."""


def default_output_dir(base_dir: Path) -> Path:
    """``BASE_DIR/../backups``: beside the data, never inside it, so a restore of BASE_DIR cannot clobber it."""
    return base_dir.resolve().parent / "backups"


async def run_backup(storage: Storage, output_dir: Path, key: bytes, progress: bool, source: str) -> Path:
    """Write ``libervia-backup-<UTC time>.tar.gz`` of ``storage`` into ``output_dir`` and return its path.

    ``storage`` is built and, unless it implements :class:`FileArchiving`, started. ``source`` names it in the
    manifest. A failed or interrupted backup leaves no archive behind.
    """
    output_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - an offline command, alone on its loop
    started = datetime.now(UTC)
    fd, tmp_name = tempfile.mkstemp(prefix=".libervia-backup-", suffix=".partial", dir=output_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with byte_progress("backup", None, progress) as bar:
                # Level 6 compresses JSON lines nearly as well as 9 at a fraction of the CPU the gateway also uses.
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
                    writer = _ArchiveWriter(tar, bar)
                    try:
                        if isinstance(storage, FileArchiving):
                            chains = storage.backup_files(writer)
                        else:
                            chains = await export_store(storage, writer, progress=False)
                    except (StorageError, OSError) as exc:
                        raise BackupError(str(exc)) from exc
                    writer.finish(key, format_iso(started), source, chains)
            raw.flush()
            os.fsync(raw.fileno())
        return _publish(tmp, output_dir, started)
    finally:
        tmp.unlink(missing_ok=True)  # noqa: ASYNC240


class _ArchiveWriter:
    """The :class:`~libervia.storage.ArchiveSink` of one archive: streams members into the tar, hashing each one
    for the manifest."""

    def __init__(self, tar: tarfile.TarFile, bar: tqdm[Any]):
        self._tar = tar
        self._bar = bar
        self.files: list[dict[str, Any]] = []

    def add(self, relpath: str, source: BinaryIO, size: int) -> None:
        relpath = checked_relpath(relpath)
        reader = CountingReader(source, self._bar, limit=size)
        self._tar.addfile(_member(data_member(relpath), size), reader)
        if reader.count != size:
            raise BackupError(f"{relpath}: {size} bytes announced, {reader.count} read")
        self.files.append({"path": relpath, "size": size, "sha256": reader.sha256.hexdigest()})

    def add_bytes(self, relpath: str, content: bytes) -> None:
        self.add(relpath, io.BytesIO(content), len(content))

    def finish(self, key: bytes, created_at: str, source: str, chains: dict[str, dict[str, Any]]) -> None:
        manifest = orjson.dumps(
            {"format": FORMAT, "created_at": created_at, "version": __version__, "base_dir": source,
             "files": self.files, "chains": chains},
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
        signature = (sign_manifest(manifest, key) + "\n").encode()
        self._tar.addfile(_member(MANIFEST_NAME, len(manifest)), io.BytesIO(manifest))
        self._tar.addfile(_member(SIGNATURE_NAME, len(signature)), io.BytesIO(signature))


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o640
    info.mtime = int(time.time())
    return info


def _publish(tmp: Path, output_dir: Path, started: datetime) -> Path:
    """Give the finished archive its final name without ever replacing an existing backup."""
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        final = output_dir / f"libervia-backup-{stamp}{suffix}.tar.gz"
        try:
            os.link(tmp, final)  # unlike rename, link refuses to overwrite
        except FileExistsError:
            continue
        fsync_dir(output_dir)
        return final
    raise BackupError(f"could not find a free archive name in {output_dir}")

