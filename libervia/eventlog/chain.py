"""The one implementation of the event log's chain rule, shared by every event store.

An entry is a JSON object with exactly the fields of :data:`ENTRY_FIELDS`. Its ``hash`` is::

    hex(SHA-256( ascii(prev) || canonical_json(entry without "hash") ))

where ``prev`` is the previous entry's ``hash`` (the empty string for the genesis entry, whose ``prev`` is
``null``) and canonical JSON is sorted keys, no whitespace, UTF-8 without ASCII escaping. A stored line is the
canonical JSON of the whole entry, ``hash`` included, so a line is byte-for-byte reproducible from its entry.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from libervia.clock import now_iso
from libervia.storage import EventDraft, LogHead

ENTRY_FIELDS: tuple[str, ...] = (
    "seq", "id", "ts", "tenant", "evento", "entidade", "entidade_id", "actor", "request_id", "payload", "prev",
    "hash",
)
_ENTRY_FIELD_SET = frozenset(ENTRY_FIELDS)

_CANONICAL = orjson.OPT_SORT_KEYS


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (orjson never escapes non-ASCII).

    Raises ``TypeError`` (``orjson.JSONEncodeError``) for anything that is not plain JSON.
    """
    return orjson.dumps(value, option=_CANONICAL)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash ``entry`` must carry, computed from everything in it except ``hash`` itself."""
    body: Mapping[str, Any] = entry
    if "hash" in entry:
        body = dict(entry)  # a C-level copy: verification calls this for every entry of a log
        del body["hash"]
    prev = entry.get("prev")
    digest = hashlib.sha256(prev.encode("ascii") if isinstance(prev, str) else b"")
    digest.update(canonical_json(body))
    return digest.hexdigest()


_HASH_MEMBER = b'"hash":"'


def stored_line_hash(prev: str | None, line: bytes, stored_hash: str) -> str | None:
    """The hash of a stored line computed from its bytes: SHA-256 over ``prev`` and the line without its
    ``"hash":"…",`` member, or None if the line has no such member.

    A line the gateway wrote is ``canonical_json(entry)``, and canonical JSON puts ``hash`` between ``evento`` and
    ``id``, so removing that member leaves exactly ``canonical_json(entry without hash)``: this is
    :func:`entry_hash` without re-serialising. (The member cannot be matched inside a string value, where every
    quote is escaped.) Verifiers use it first and fall back to :func:`entry_hash` only when it disagrees.
    """
    cut = line.find(_HASH_MEMBER)
    value = stored_hash.encode("utf-8")
    after = cut + len(_HASH_MEMBER) + len(value)
    if cut < 0 or not line.startswith(value, cut + len(_HASH_MEMBER)) or not line.startswith(b'",', after):
        return None
    # One joined buffer and one hash call: cheaper than feeding a hasher piece by piece.
    prefix = prev.encode("ascii") if prev is not None else b""
    return hashlib.sha256(b"".join((prefix, line[:cut], line[after + 2:]))).hexdigest()


def has_entry_shape(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.keys() == _ENTRY_FIELD_SET


def encode_line(entry: Mapping[str, Any]) -> bytes:
    """The bytes stored for one entry: its canonical JSON and a newline."""
    return canonical_json(entry) + b"\n"


# --- event ids ---------------------------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


class _IdGenerator:
    """ULID-style ids: 48 bits of milliseconds then 80 random bits, in Crockford base32.

    Within one millisecond the random part is incremented instead of redrawn, so ids made by one process sort in
    the order they were made (ULID's monotonic mode). Ids from different processes sort by time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0
        self._prefix = ""   # "evt_" and the ten digits of _last_ms

    def __call__(self) -> str:
        return self.take(1)[0]

    def take(self, count: int) -> list[str]:
        """``count`` consecutive ids: one clock read and one lock for a whole batch of entries."""
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                # Same millisecond (or the clock stepped back): stay after the previous id.
                now_ms = self._last_ms
            else:
                # The top bit stays clear so that increments within a millisecond cannot overflow in practice.
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
                self._last_random -= 1  # the loop below starts by stepping past it
            ids = []
            for _ in range(count):
                self._last_random += 1
                if self._last_random > _RANDOM_MAX:
                    now_ms += 1
                    self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
                if now_ms != self._last_ms:
                    self._last_ms = now_ms
                    self._prefix = "evt_" + _digits50(now_ms)
                ids.append(self._prefix + _digits80(self._last_random))
            return ids


_CROCKFORD_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)   # 10 bits -> two digits


def _digits80(value: int) -> str:
    """The 16 digits of an 80-bit value: eight table look-ups instead of a base32 encoder written in Python."""
    pairs = _CROCKFORD_PAIRS
    return (pairs[value >> 70] + pairs[(value >> 60) & 1023] + pairs[(value >> 50) & 1023]
            + pairs[(value >> 40) & 1023] + pairs[(value >> 30) & 1023] + pairs[(value >> 20) & 1023]
            + pairs[(value >> 10) & 1023] + pairs[value & 1023])


def _digits50(value: int) -> str:
    """The 10 digits of a value below 2**50 (a ULID's time part with its two leading zero bits)."""
    pairs = _CROCKFORD_PAIRS
    return (pairs[value >> 40] + pairs[(value >> 30) & 1023] + pairs[(value >> 20) & 1023]
            + pairs[(value >> 10) & 1023] + pairs[value & 1023])


new_event_id = _IdGenerator()
new_event_ids = new_event_id.take


# --- building entries --------------------------------------------------------------------------------------------

def build_entries(tenant: str, head: LogHead, drafts: Sequence[EventDraft], ts: str | None = None
                  ) -> list[dict[str, Any]]:
    """The stored entries for ``drafts`` appended after ``head``, chained and hashed.

    Every store calls this (through :func:`chain_drafts`) while it holds its append lock, with the head as every
    process sees it, so the chain rule lives in exactly one place. All entries of one batch share ``ts``. Raises
    ``TypeError`` when a payload is not JSON, before anything is returned (so the caller writes nothing).
    """
    return chain_drafts(tenant, head, drafts, ts)[0]


_ID_MEMBER = b',"id":"'


def chain_drafts(tenant: str, head: LogHead, drafts: Sequence[EventDraft], ts: str | None = None
                 ) -> tuple[list[dict[str, Any]], list[bytes]]:
    """:func:`build_entries` and each entry's stored line (``canonical_json(entry)``, no newline).

    The line is the hashed body with the ``hash`` member put where canonical JSON puts it, between ``evento``
    and ``id`` (the members before ``id`` are strings or null, so the first ``,"id":"`` is the member itself):
    one serialisation per entry instead of two.
    """
    stamp = ts or now_iso()
    prev = head.hash
    seq = head.seq
    entries: list[dict[str, Any]] = []
    lines: list[bytes] = []
    dumps, loads, sha256, sort_keys = orjson.dumps, orjson.loads, hashlib.sha256, _CANONICAL
    for draft, event_id in zip(drafts, new_event_ids(len(drafts)), strict=True):
        seq += 1
        payload = draft.payload
        entry: dict[str, Any] = {
            "seq": seq,
            "id": event_id,
            "ts": stamp,
            "tenant": tenant,
            "evento": draft.evento,
            "entidade": draft.entidade,
            "entidade_id": draft.entidade_id,
            "actor": draft.actor,
            "request_id": draft.request_id,
            # A round trip through JSON freezes the payload into plain JSON values (and rejects the rest), so the
            # entry returned to the caller is exactly what a reader will get back (keys in the stored order too).
            "payload": loads(dumps(payload if type(payload) is dict else dict(payload), option=sort_keys)),
            "prev": prev,
        }
        body = dumps(entry, option=sort_keys)
        digest = sha256(prev.encode("ascii") if prev is not None else b"")
        digest.update(body)
        entry["hash"] = prev = digest.hexdigest()
        cut = body.index(_ID_MEMBER)
        lines.append(b"".join((body[:cut], b',"hash":"', prev.encode("ascii"), b'"', body[cut:])))
        entries.append(entry)
    return entries, lines
