"""The backup archive format, shared by :mod:`libervia.ops.backup` (writer) and :mod:`libervia.ops.restore`.

A backup is a gzip-compressed tar holding, in this order:

* ``data/<path>``: the captured files, ``<path>`` relative to ``BASE_DIR`` in POSIX form;
* ``manifest.json``: ``{format, created_at, version, base_dir, files:[{path, size, sha256}],
  chains:{tenant: {seq, hash}}}`` where ``files[].path`` names the ``data/`` member without its prefix;
* ``manifest.sig``: hex HMAC-SHA-256 of the manifest bytes, keyed with the checkpoint key.

The manifest comes last because the file hashes are only known once every file has been streamed in; a
restore reads the whole archive before it trusts any of it anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import PurePosixPath
from typing import IO, Any, Protocol

from tqdm import tqdm

FORMAT = "libervia-backup/1"
DATA_PREFIX = "data/"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"

# Domain separation: the checkpoint key also signs checkpoints, and a manifest signature must never be
# mistaken for one (or the other way round), whatever bytes either happens to contain.
_SIGNATURE_CONTEXT = b"libervia backup manifest v1\n"

_CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """The archive is not a valid, untampered Libervia backup."""


def sign_manifest(manifest: bytes, key: bytes) -> str:
    return hmac.new(key, _SIGNATURE_CONTEXT + manifest, hashlib.sha256).hexdigest()


def signature_matches(manifest: bytes, signature: str, key: bytes) -> bool:
    return hmac.compare_digest(sign_manifest(manifest, key), signature.strip())


def data_member(relpath: str) -> str:
    return DATA_PREFIX + relpath


def checked_relpath(path: str) -> str:
    """Return ``path`` if it is a plain relative POSIX path that stays inside ``BASE_DIR``, else raise.

    Restores write wherever the manifest says, so a path with ``..``, an absolute path or odd components would
    let an archive write outside the target directory.
    """
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or str(pure) != path
        or any(part in ("", ".", "..") for part in pure.parts)
    ):
        raise ArchiveError(f"unsafe path in archive: {path!r}")
    return path


def byte_progress(desc: str, total: int | None, enabled: bool) -> tqdm[Any]:
    """A byte-counting progress bar on stderr; a no-op object when ``enabled`` is false."""
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled,
                leave=False, dynamic_ncols=True)


class CountingReader:
    """Reads from ``raw`` at most ``limit`` bytes (all when None), hashing and counting them, and advancing
    ``bar`` when one is given."""

    def __init__(self, raw: IO[bytes], bar: tqdm[Any] | None = None, limit: int | None = None):
        self._raw = raw
        self._bar = bar
        self._remaining = limit
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._remaining is not None:
            if self._remaining <= 0:
                return b""
            size = self._remaining if size is None or size < 0 else min(size, self._remaining)
        chunk = self._raw.read(size)
        if self._remaining is not None:
            self._remaining -= len(chunk)
        self.sha256.update(chunk)
        self.count += len(chunk)
        if self._bar is not None:
            self._bar.update(len(chunk))
        return chunk


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def drain(stream: Readable) -> None:
    """Read ``stream`` to its end, so a gzip reader checks its CRC and length trailer."""
    while stream.read(_CHUNK):
        pass
