"""Signed checkpoints: HMAC-SHA-256 statements that a tenant's log had entry ``seq`` with ``hash`` at ``ts``.

The key never lives in a tenant's files, so whoever can rewrite a log cannot forge the checkpoints that pin it;
truncation and whole-file rewrites then show up as a checkpoint the log no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from libervia.clock import now_iso
from libervia.eventlog.chain import canonical_json
from libervia.storage import Checkpoint

_KEY_DERIVATION_LABEL = b"libervia/eventlog/checkpoint-key/v1"


def derive_checkpoint_key(pepper: str) -> bytes:
    """A checkpoint key derived from the auth pepper, for deployments that configure no explicit key.

    A distinct label keeps the derived key unrelated to the key hashes the pepper also protects.
    """
    if not pepper:
        raise ValueError("the pepper must not be empty")
    return hmac.new(pepper.encode("utf-8"), _KEY_DERIVATION_LABEL, hashlib.sha256).digest()


def signed_message(tenant: str, seq: int, hash_: str, ts: str) -> bytes:
    """The exact bytes a checkpoint signature covers: canonical JSON of ``{hash, seq, tenant, ts}``."""
    return canonical_json({"tenant": tenant, "seq": seq, "hash": hash_, "ts": ts})


class CheckpointSigner:
    """Signs and verifies checkpoints with one secret key (at least 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the checkpoint key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return "CheckpointSigner(<key>)"

    def _mac(self, tenant: str, seq: int, hash_: str, ts: str) -> str:
        return hmac.new(self._key, signed_message(tenant, seq, hash_, ts), hashlib.sha256).hexdigest()

    def sign(self, tenant: str, seq: int, hash_: str, ts: str | None = None) -> Checkpoint:
        stamp = ts or now_iso()
        return Checkpoint(tenant=tenant, seq=seq, hash=hash_, ts=stamp,
                          signature=self._mac(tenant, seq, hash_, stamp))

    def verify(self, checkpoint: Checkpoint) -> bool:
        try:
            expected = self._mac(checkpoint.tenant, checkpoint.seq, checkpoint.hash, checkpoint.ts)
        except TypeError:
            return False
        if not isinstance(checkpoint.signature, str):
            return False
        return hmac.compare_digest(expected.encode("ascii"), checkpoint.signature.encode("utf-8"))


def checkpoint_from_dict(data: Any) -> Checkpoint | None:
    """A checkpoint read back from storage, or None when the record does not have a checkpoint's shape."""
    if not isinstance(data, dict):
        return None
    tenant, seq, hash_, ts, signature = (data.get(k) for k in ("tenant", "seq", "hash", "ts", "signature"))
    if not (isinstance(tenant, str) and isinstance(seq, int) and not isinstance(seq, bool)
            and isinstance(hash_, str) and isinstance(ts, str) and isinstance(signature, str)):
        return None
    return Checkpoint(tenant=tenant, seq=seq, hash=hash_, ts=ts, signature=signature)


def checkpoints_from_lines(data: bytes) -> list[Checkpoint]:
    """The checkpoints of a JSON-lines record (a checkpoints file, a backup's), in order; other lines skipped."""
    result = []
    for line in data.splitlines():
        try:
            checkpoint = checkpoint_from_dict(orjson.loads(line))
        except orjson.JSONDecodeError:
            checkpoint = None
        if checkpoint is not None:
            result.append(checkpoint)
    return result
