"""``libervia restore``: load a backup made by :mod:`libervia.ops.backup` into the configured store, verified.

Order of work, so that a bad archive never costs the operator the data they still have:

1. read the whole archive once: signature of the manifest, then every file's size and SHA-256 against it
   (nothing is touched, not even created, before this passes);
2. refuse a store that holds data unless forced;
3. extract into a staging directory, hashing again in case the archive changed since step 1;
4. a store that keeps files (:class:`~libervia.storage.FileArchiving`, the embedded store) moves its current
   content aside (never deleted) and the staged files in, every move a rename; any other store sets its content
   aside if forced, then loads every log and the registry through the storage protocol;
5. check every restored log's head against the manifest and verify every chain and its checkpoints, through
   the store.

The gateways must be stopped while a restore runs: they would keep serving from the data being replaced.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import orjson

from libervia.durable import fsync_dir
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.ops.archive import (
    DATA_PREFIX,
    FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArchiveError,
    CountingReader,
    byte_progress,
    checked_relpath,
    drain,
    signature_matches,
)
from libervia.ops.transfer import import_tree, is_empty, verdict, verify_store
from libervia.storage import FileArchiving, Storage, StorageError

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1      # restored, but a chain or a head does not check out
EXIT_ARCHIVE_REFUSED = 3    # unreadable, unsigned, tampered or not ours; the target was not touched
EXIT_TARGET_NOT_EMPTY = 4   # the target holds data and --force was not given; nothing was touched
EXIT_WRITE_FAILED = 5       # the target could not be written; its previous content was left in place

_MAX_MANIFEST_BYTES = 256 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileRecord:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    created_at: str
    version: str
    files: dict[str, FileRecord]
    chains: dict[str, dict[str, Any]]


class _TargetWriteError(Exception):
    """Writing into the staging directory failed: a problem of the target, not of the archive."""


async def run_restore(archive: Path, storage: Storage, key: bytes, force: bool, progress: bool) -> int:
    """Restore ``archive`` into ``storage`` (built, not started; closed on return); return an ``EXIT_*`` code,
    explaining it on stderr."""
    try:
        manifest = read_verified_manifest(archive, key, progress)
    except ArchiveError as exc:
        _say(f"refused: {archive}: {exc}; the store was not touched", error=True)
        return EXIT_ARCHIVE_REFUSED
    try:
        if isinstance(storage, FileArchiving):
            code = _restore_files(archive, manifest, storage, force, progress)
            if code != EXIT_OK:
                return code
            await storage.start()
        else:
            await storage.start()
            code = await _restore_through_protocol(archive, manifest, storage, force, progress)
            if code != EXIT_OK:
                return code
        total = sum(record.size for record in manifest.files.values())
        _say(f"restored {len(manifest.files)} files ({total} bytes) from the backup of {manifest.created_at} "
             f"(version {manifest.version})")
        problems = await verify_store(storage, CheckpointSigner(key), sorted(manifest.chains), progress,
                                      expected=manifest.chains)
    except StorageError as exc:
        _say(f"restore failed: {exc}", error=True)
        return EXIT_WRITE_FAILED
    finally:
        await storage.close()
    return verdict(problems, len(manifest.chains), _say)


def _restore_files(archive: Path, manifest: Manifest, storage: FileArchiving, force: bool, progress: bool) -> int:
    occupied = storage.occupied()
    if occupied and not force:
        _say(f"refused: the store holds data ({len(occupied)} entries); stop the gateway and use --force to "
             "restore over it (the current content is moved aside, not deleted)", error=True)
        return EXIT_TARGET_NOT_EMPTY
    try:
        parent = storage.staging_parent()
        created_target = not parent.exists()
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=parent))
    except (OSError, StorageError) as exc:
        _say(f"restore aborted: cannot write into the store: {exc}", error=True)
        return EXIT_WRITE_FAILED
    try:
        _extract(archive, manifest, staging, progress)
    except (ArchiveError, _TargetWriteError) as exc:
        shutil.rmtree(staging, ignore_errors=True)  # our own half-written copy, nothing of the operator's
        if created_target:
            parent.rmdir()
        _say(f"restore aborted: {exc}; the store was left as it was", error=True)
        return EXIT_ARCHIVE_REFUSED if isinstance(exc, ArchiveError) else EXIT_WRITE_FAILED
    try:
        aside = storage.restore_files(staging)
    except OSError as exc:
        # Renames inside one directory do not fail in practice; if one did, say where everything is.
        _say(f"restore interrupted while swapping content: {exc}; the verified backup is in {staging}, the "
             f"previous content in {parent} and its .pre-restore-* directory", error=True)
        return EXIT_WRITE_FAILED
    if aside is not None:
        _say(f"previous content moved to {aside}")
    return EXIT_OK


async def _restore_through_protocol(archive: Path, manifest: Manifest, storage: Storage, force: bool,
                                    progress: bool) -> int:
    try:
        if not await is_empty(storage):
            if not force:
                _say("refused: the store holds data; stop the gateways and use --force to restore over it (the "
                     "current content is set aside, not deleted)", error=True)
                return EXIT_TARGET_NOT_EMPTY
            set_aside = getattr(storage, "set_aside", None)
            if set_aside is None:
                _say(f"refused: storage {storage.name!r} cannot set its content aside; empty it first", error=True)
                return EXIT_TARGET_NOT_EMPTY
            _say(f"previous content moved to {await set_aside()}")
        with tempfile.TemporaryDirectory(prefix="libervia-restore-") as staging:
            try:
                _extract(archive, manifest, Path(staging), progress)
            except (ArchiveError, _TargetWriteError) as exc:
                _say(f"restore aborted: {exc}; nothing was loaded", error=True)
                return EXIT_ARCHIVE_REFUSED if isinstance(exc, ArchiveError) else EXIT_WRITE_FAILED
            await import_tree(storage, Path(staging), progress)
    except StorageError as exc:
        _say(f"restore failed: {exc}", error=True)
        return EXIT_WRITE_FAILED
    return EXIT_OK


def read_verified_manifest(archive: Path, key: bytes, progress: bool) -> Manifest:
    """Read the whole archive and return its manifest once the signature and every file's hash check out.

    Raises :class:`ArchiveError` naming the first problem. Nothing is written anywhere.
    """
    seen: dict[str, FileRecord] = {}
    special: dict[str, bytes] = {}

    def inspect(info: tarfile.TarInfo, stream: IO[bytes] | None) -> None:
        if info.name in (MANIFEST_NAME, SIGNATURE_NAME):
            if info.name in special or stream is None or info.size > _MAX_MANIFEST_BYTES:
                raise ArchiveError(f"bad or repeated member {info.name}")
            special[info.name] = stream.read()
            return
        relpath = _data_relpath(info, stream)
        if relpath in seen:
            raise ArchiveError(f"member {info.name} appears twice")
        assert stream is not None  # _data_relpath only accepts regular files
        reader = CountingReader(stream)
        drain(reader)
        seen[relpath] = FileRecord(size=reader.count, sha256=reader.sha256.hexdigest())

    _scan(archive, "verify", progress, inspect)
    if MANIFEST_NAME not in special or SIGNATURE_NAME not in special:
        raise ArchiveError("no signed manifest: not a Libervia backup")
    manifest_bytes = special[MANIFEST_NAME]
    if not signature_matches(manifest_bytes, special[SIGNATURE_NAME].decode("ascii", "replace"), key):
        raise ArchiveError("the manifest signature does not match (tampered, or made with another key)")
    manifest = _parse_manifest(manifest_bytes)
    if seen.keys() != manifest.files.keys():
        missing = sorted(manifest.files.keys() - seen.keys())
        extra = sorted(seen.keys() - manifest.files.keys())
        raise ArchiveError(f"archive content differs from its manifest (missing {missing[:5]}, extra {extra[:5]})")
    for relpath, record in manifest.files.items():
        if seen[relpath] != record:
            raise ArchiveError(f"{relpath}: size or SHA-256 differs from the manifest")
    return manifest


def _parse_manifest(raw: bytes) -> Manifest:
    try:
        data = orjson.loads(raw)
        if data.get("format") != FORMAT:
            raise ArchiveError(f"unknown backup format {data.get('format')!r}")
        files = {}
        for item in data["files"]:
            relpath = checked_relpath(str(item["path"]))
            if relpath in files:
                raise ArchiveError(f"{relpath} listed twice in the manifest")
            files[relpath] = FileRecord(size=int(item["size"]), sha256=str(item["sha256"]))
        chains = {str(tenant): dict(head) for tenant, head in data["chains"].items()}
        return Manifest(created_at=str(data["created_at"]), version=str(data["version"]), files=files,
                        chains=chains)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArchiveError(f"malformed manifest: {exc}") from exc


def _extract(archive: Path, manifest: Manifest, staging: Path, progress: bool) -> None:
    owner = _owner_to_adopt(staging.parent)
    written: set[str] = set()
    directories: set[Path] = {staging}

    def extract(info: tarfile.TarInfo, stream: IO[bytes] | None) -> None:
        if info.name in (MANIFEST_NAME, SIGNATURE_NAME):
            return
        relpath = _data_relpath(info, stream)
        record = manifest.files.get(relpath)
        if record is None or relpath in written:
            raise ArchiveError(f"the archive changed while being restored ({info.name})")
        assert stream is not None
        target = staging / relpath
        try:
            for parent in reversed(target.relative_to(staging).parents[:-1]):
                directory = staging / parent
                if directory not in directories:
                    directory.mkdir(mode=0o750, exist_ok=True)
                    _adopt(directory, owner)
                    directories.add(directory)
            reader = CountingReader(stream)
            with open(target, "xb") as out:
                os.fchmod(out.fileno(), 0o640)
                while chunk := reader.read(_COPY_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            _adopt(target, owner)
        except OSError as exc:
            raise _TargetWriteError(f"cannot write {target}: {exc}") from exc
        if FileRecord(reader.count, reader.sha256.hexdigest()) != record:
            raise ArchiveError(f"the archive changed while being restored ({relpath})")
        written.add(relpath)

    _scan(archive, "restore", progress, extract)
    if written != manifest.files.keys():
        raise ArchiveError("the archive changed while being restored (members missing)")
    try:
        for directory in directories:
            fsync_dir(directory)
    except OSError as exc:
        raise _TargetWriteError(f"cannot sync {staging}: {exc}") from exc


def _scan(archive: Path, desc: str, progress: bool,
          handle: Callable[[tarfile.TarInfo, IO[bytes] | None], None]) -> None:
    """Feed every member of ``archive`` to ``handle`` in order, then read the gzip stream to its end so its CRC
    is checked too. Any damage surfaces as :class:`ArchiveError`."""
    try:
        with archive.open("rb") as raw, byte_progress(desc, archive.stat().st_size, progress) as bar:
            counted = cast(IO[bytes], CountingReader(raw, bar))  # a reader is all GzipFile needs of it
            with gzip.GzipFile(fileobj=counted, mode="rb") as unzipped:
                with tarfile.open(fileobj=unzipped, mode="r|") as tar:
                    for info in tar:
                        handle(info, tar.extractfile(info) if info.isreg() else None)
                drain(unzipped)
    except (tarfile.TarError, EOFError, zlib.error, UnicodeDecodeError, OSError) as exc:
        # OSError covers gzip's BadGzipFile (a CRC or length mismatch) as well as a missing archive file.
        raise ArchiveError(f"unreadable archive: {exc}") from exc


def _data_relpath(info: tarfile.TarInfo, stream: IO[bytes] | None) -> str:
    if not info.name.startswith(DATA_PREFIX):
        raise ArchiveError(f"unexpected member {info.name!r}")
    if stream is None or not info.isreg():
        raise ArchiveError(f"{info.name} is not a regular file")
    return checked_relpath(info.name[len(DATA_PREFIX):])


def _owner_to_adopt(base_dir: Path) -> tuple[int, int] | None:
    """Restored files belong to whoever owns the target, so a restore run as root leaves files the gateway's
    own user can write."""
    if os.geteuid() != 0:
        return None
    info = base_dir.stat()
    return info.st_uid, info.st_gid


def _adopt(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner)


def _say(message: str, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)
