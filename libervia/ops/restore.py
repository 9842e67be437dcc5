"""``libervia restore``: put a backup made by :mod:`libervia.ops.backup` back into ``BASE_DIR``, verified.

Order of work, so that a bad archive never costs the operator the data they still have:

1. refuse a non-empty target unless forced;
2. read the whole archive once: signature of the manifest, then every file's size and SHA-256 against it;
3. extract into a staging directory inside the target (same file system, so moving it in is a rename),
   hashing again in case the archive changed since step 2;
4. move whatever the target held aside into ``.pre-restore-<time>/`` (never deleted), then move the staging
   content in;
5. check every restored log's head against the manifest and verify every chain and its checkpoints.

The gateway must be stopped while a restore runs: it would keep serving from the files being replaced.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from libervia.durable import fsync_dir
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
from libervia_plugins.storage_files.eventlog import LogFile, parse_entry

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1      # restored, but a chain or a head does not check out
EXIT_ARCHIVE_REFUSED = 3    # unreadable, unsigned, tampered or not ours; the target was not touched
EXIT_TARGET_NOT_EMPTY = 4   # the target holds data and --force was not given; nothing was touched
EXIT_WRITE_FAILED = 5       # the target could not be written; its previous content was left in place

# Entries a target may hold and still count as empty: earlier restores' leftovers and a file system's own.
_IGNORED_PREFIXES = (".pre-restore-", ".restore-")
_IGNORED_NAMES = frozenset({"lost+found"})
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


def run_restore(archive: Path, base_dir: Path, key: bytes, force: bool, progress: bool) -> int:
    """Restore ``archive`` into ``base_dir``; return one of the ``EXIT_*`` codes, explaining it on stderr."""
    base_dir = base_dir.absolute()
    if base_dir.exists() and not base_dir.is_dir():
        _say(f"refused: {base_dir} exists and is not a directory", error=True)
        return EXIT_TARGET_NOT_EMPTY
    occupied = _occupying_entries(base_dir)
    if occupied and not force:
        _say(f"refused: {base_dir} is not empty ({len(occupied)} entries); stop the gateway and use --force to "
             "restore over it (the current content is moved aside, not deleted)", error=True)
        return EXIT_TARGET_NOT_EMPTY
    try:
        manifest = read_verified_manifest(archive, key, progress)
    except ArchiveError as exc:
        _say(f"refused: {archive}: {exc}; {base_dir} was not touched", error=True)
        return EXIT_ARCHIVE_REFUSED

    created_target = not base_dir.exists()
    try:
        base_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=base_dir))
    except OSError as exc:
        _say(f"restore aborted: cannot write into {base_dir}: {exc}", error=True)
        return EXIT_WRITE_FAILED
    try:
        _extract(archive, manifest, staging, progress)
    except (ArchiveError, _TargetWriteError) as exc:
        shutil.rmtree(staging, ignore_errors=True)  # our own half-written copy, nothing of the operator's
        if created_target:
            base_dir.rmdir()
        _say(f"restore aborted: {exc}; {base_dir} was left as it was", error=True)
        return EXIT_ARCHIVE_REFUSED if isinstance(exc, ArchiveError) else EXIT_WRITE_FAILED
    try:
        aside = _swap_in(staging, base_dir)
    except OSError as exc:
        # Renames inside one directory do not fail in practice; if one did, say where everything is.
        _say(f"restore interrupted while swapping content: {exc}; the verified backup is in {staging}, the "
             f"previous content in {base_dir} and its .pre-restore-* directory", error=True)
        return EXIT_WRITE_FAILED

    total = sum(record.size for record in manifest.files.values())
    _say(f"restored {len(manifest.files)} files ({total} bytes) from the backup of {manifest.created_at} "
         f"(version {manifest.version}) into {base_dir}")
    if aside is not None:
        _say(f"previous content of {base_dir} moved to {aside}")
    problems = _check_heads(base_dir, manifest) + _verify_chains(base_dir, manifest, key, progress)
    if problems:
        for problem in problems:
            _say(f"verify: {problem}", error=True)
        return EXIT_VERIFY_FAILED
    _say(f"verified {len(manifest.chains)} tenant chains")
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


def _swap_in(staging: Path, base_dir: Path) -> Path | None:
    """Move the target's current entries aside, then the staged ones in; every move is a rename."""
    aside = None
    occupied = _occupying_entries(base_dir)  # again: the staging directory is not among them
    if occupied:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = Path(tempfile.mkdtemp(prefix=f".pre-restore-{stamp}-", dir=base_dir))
        for entry in occupied:
            entry.rename(aside / entry.name)
        fsync_dir(aside)
    for entry in staging.iterdir():
        entry.rename(base_dir / entry.name)
    staging.rmdir()
    fsync_dir(base_dir)
    return aside


def _check_heads(base_dir: Path, manifest: Manifest) -> list[str]:
    problems = []
    for tenant, expected in sorted(manifest.chains.items()):
        log = base_dir / "tenants" / tenant / "eventlog" / "events.jsonl"
        try:
            with LogFile.open_readonly(log) as view:
                last = view.last_line(view.size())
        except OSError as exc:
            problems.append(f"tenant {tenant}: cannot read the restored log: {exc}")
            continue
        entry = parse_entry(last[1]) if last is not None and last[2] else None
        head = {"seq": entry["seq"], "hash": entry["hash"]} if entry else {"seq": 0 if last is None else None,
                                                                         "hash": None}
        if head != {"seq": expected.get("seq"), "hash": expected.get("hash")}:
            problems.append(f"tenant {tenant}: restored head {head} differs from the backup's {expected}")
    return problems


def _verify_chains(base_dir: Path, manifest: Manifest, key: bytes, progress: bool) -> list[str]:
    if not manifest.chains:
        return []
    # Imported here: the event-log verifier pulls in the storage layer, which backup and evidence never need.
    from libervia.eventlog.checkpoints import CheckpointSigner
    from libervia.eventlog.verify import offline_verify

    failed = offline_verify(base_dir, sorted(manifest.chains), CheckpointSigner(key), progress)
    return ["a chain or checkpoint does not verify (see the tenant lines above)"] if failed else []


def _scan(archive: Path, desc: str, progress: bool,
          handle: Callable[[tarfile.TarInfo, IO[bytes] | None], None]) -> None:
    """Feed every member of ``archive`` to ``handle`` in order, then read the gzip stream to its end so its CRC
    is checked too. Any damage surfaces as :class:`ArchiveError`."""
    try:
        with archive.open("rb") as raw, byte_progress(desc, archive.stat().st_size, progress) as bar:
            # typeshed's gzip wants a seekable file; gzip seeks only to rewind, which this one-pass read never does.
            with gzip.GzipFile(fileobj=CountingReader(raw, bar), mode="rb") as unzipped:  # type: ignore[call-overload]
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


def _occupying_entries(base_dir: Path) -> list[Path]:
    if not base_dir.is_dir():
        if base_dir.exists():
            return [base_dir]
        return []
    return sorted(entry for entry in base_dir.iterdir()
                  if entry.name not in _IGNORED_NAMES and not entry.name.startswith(_IGNORED_PREFIXES))


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
