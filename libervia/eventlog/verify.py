"""Proving a tenant's log: full and fast verification against its signed checkpoints.

Everything here reads entries through the :class:`libervia.storage.TenantEventLog` protocol (or any iterable of
entry dicts), so it works for every store. The results are the bodies of the audit routes (API.md §7); the export
manifest and replay aggregates of those routes live with them in ``plugins/audit_api.py``.

``firstInvalidIndex`` is the **seq** of the first entry that fails (seqs start at 1 and are the entry's position,
so for a deleted line it is the seq that is missing, and for a truncated log the first seq past the end).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from libervia.eventlog.chain import entry_hash, has_entry_shape, stored_line_hash
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.storage import Checkpoint, StorageError, TenantEventLog

# Verification runs on the event loop between reads; give other tasks a turn this often.
YIELD_EVERY = 2048


@dataclass(frozen=True, slots=True)
class Failure:
    seq: int
    reason: str
    entry_id: str | None = None


def check_entry(entry: Any, expected_seq: int, expected_prev: str | None, tenant: str | None) -> str | None:
    """Why ``entry`` cannot be the entry at ``expected_seq`` after ``expected_prev``, or None if it can."""
    if not has_entry_shape(entry):
        return "malformed entry: not an object with exactly the event log fields"
    seq = entry["seq"]
    if seq != expected_seq:
        return f"seq mismatch: expected seq {expected_seq}, found {seq!r} (a line was deleted, inserted or moved)"
    if entry["prev"] != expected_prev:
        return "broken link: prev does not equal the previous entry's hash"
    if tenant is not None and entry["tenant"] != tenant:
        return f"tenant mismatch: entry belongs to {entry['tenant']!r}"
    try:
        computed = entry_hash(entry)
    except (TypeError, UnicodeEncodeError):
        return "malformed entry: cannot be hashed"
    if computed != entry["hash"]:
        return "hash mismatch: the entry's content does not match its hash (edited)"
    return None


def entry_id(entry: Any) -> str | None:
    value = entry.get("id") if isinstance(entry, dict) else None
    return value if isinstance(value, str) else None


class ChainCheck:
    """Checks entries one at a time against the chain rule and the signed checkpoints, stopping at the first fault.

    Feed entries in log order with :meth:`feed`; call :meth:`finish` when the log ends to catch truncation (a
    signed checkpoint beyond the last entry) and to build the API result.
    """

    def __init__(self, tenant: str, checkpoints: Sequence[Checkpoint], signer: CheckpointSigner, *,
                 start_seq: int = 1, prev_hash: str | None = None, report_bad_signatures: bool = True) -> None:
        self.tenant = tenant
        self.expected_seq = start_seq
        self.prev_hash = prev_hash
        self.verified = 0
        self.failure: Failure | None = None
        self._by_seq: dict[int, list[Checkpoint]] = {}
        self._newest_matched: Checkpoint | None = None
        self._bad_signature_seqs: set[int] = set()
        for cp in checkpoints:
            if cp.tenant != tenant:
                continue
            if signer.verify(cp):
                self._by_seq.setdefault(cp.seq, []).append(cp)
            elif report_bad_signatures:
                self._bad_signature_seqs.add(cp.seq)
        # Seqs that need more than the chain rule: a checkpoint to compare, or a forged one to report.
        self._special = frozenset(self._by_seq) | self._bad_signature_seqs

    def feed(self, entry: Any, line: bytes | None = None) -> bool:
        """Check the next entry (``line``: the bytes it is stored as, if the store has them); False once a fault
        was found (the fault is in :attr:`failure`).

        Verification has to keep pace with merely parsing and hashing the same bytes, so the common case (a plain
        entry, no checkpoint at its seq) is handled inline, hashing the stored bytes when there are some; anything
        else gets the full check and its reason.
        """
        seq = self.expected_seq
        if (self.failure is None and seq not in self._special and has_entry_shape(entry)
                and entry["seq"] == seq and entry["prev"] == self.prev_hash and entry["tenant"] == self.tenant):
            stored = entry["hash"]
            prev = self.prev_hash
            try:
                if line is not None and stored_line_hash(prev, line, stored) == stored:
                    digest = stored
                else:
                    body = dict(entry)
                    del body["hash"]
                    hasher = hashlib.sha256(prev.encode("ascii") if prev is not None else b"")
                    hasher.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
                    digest = hasher.hexdigest()
            except (TypeError, UnicodeEncodeError, AttributeError):
                return self._feed_checked(entry)
            if digest == stored:
                self.prev_hash = stored
                self.expected_seq = seq + 1
                self.verified += 1
                return True
        return self._feed_checked(entry)

    def feed_lines(self, lines: Iterable[bytes]) -> bool:
        """Parse and check stored lines (each the canonical JSON of one entry), in order.

        The loop keeps its state in locals and hashes the stored bytes (:func:`stored_line_hash`): this is the
        path of ``libervia verify`` and ``/audit/verify`` over a whole log, which must run near the speed of
        parsing and hashing alone. Any line that is not plainly valid goes through :meth:`feed` for its verdict.
        """
        loads, decode_error, line_hash = orjson.loads, orjson.JSONDecodeError, stored_line_hash
        seq, prev, tenant, special = self.expected_seq, self.prev_hash, self.tenant, self._special
        verified = 0
        try:
            for line in lines:
                try:
                    entry = loads(line)
                except decode_error:
                    entry = None
                if (seq not in special and has_entry_shape(entry) and entry["seq"] == seq
                        and entry["prev"] == prev and entry["tenant"] == tenant):
                    stored = entry["hash"]
                    if isinstance(stored, str) and line_hash(prev, line, stored) == stored:
                        prev = stored
                        seq += 1
                        verified += 1
                        continue
                self.expected_seq, self.prev_hash, self.verified = seq, prev, self.verified + verified
                verified = 0
                if not isinstance(entry, dict):
                    self.fail_unreadable("unreadable entry: unparsable line, not a JSON object")
                    return False
                if not self.feed(entry, line):
                    return False
                seq, prev = self.expected_seq, self.prev_hash
        finally:
            if self.failure is None:
                self.expected_seq, self.prev_hash, self.verified = seq, prev, self.verified + verified
        return True

    def _feed_checked(self, entry: Any) -> bool:
        if self.failure is not None:
            return False
        seq = self.expected_seq
        if seq in self._bad_signature_seqs:
            return self._fail(seq, "checkpoint signature invalid: a checkpoint for this seq was not signed with "
                                   "the gateway's key", entry_id(entry))
        reason = check_entry(entry, seq, self.prev_hash, self.tenant)
        if reason is not None:
            return self._fail(seq, reason, entry_id(entry))
        for cp in self._by_seq.get(seq, ()):
            if cp.hash != entry["hash"]:
                return self._fail(seq, "checkpoint mismatch: the log differs from what a signed checkpoint "
                                       "recorded (rewritten)", entry["id"])
            if self._newest_matched is None or cp.seq >= self._newest_matched.seq:
                self._newest_matched = cp
        self.prev_hash = entry["hash"]
        self.expected_seq = seq + 1
        self.verified += 1
        return True

    def fail_unreadable(self, reason: str) -> None:
        """The store could not produce the next entry (an unparsable line, an I/O error)."""
        if self.failure is None:
            self._fail(self.expected_seq, reason, None)

    def _fail(self, seq: int, reason: str, entry_id: str | None) -> bool:
        self.failure = Failure(seq, reason, entry_id)
        return False

    def finish(self) -> dict[str, Any]:
        last_seq = self.expected_seq - 1
        if self.failure is None:
            # Checkpoints past the end: a genuine one means the tail was cut off, a forged one is itself tampering.
            faults = [(seq, "checkpoint signature invalid: a checkpoint for this seq was not signed with the "
                            "gateway's key") for seq in self._bad_signature_seqs if seq > last_seq]
            beyond = max((seq for seq in self._by_seq if seq > last_seq), default=None)
            if beyond is not None:
                faults.append((last_seq + 1, f"truncated: a signed checkpoint covers seq {beyond} but the log "
                                             f"ends at seq {last_seq}"))
            if faults:
                self._fail(*min(faults), None)
        result: dict[str, Any] = {
            "valid": self.failure is None,
            "totalVerified": self.verified,
            "headHash": self.prev_hash,
        }
        if self.failure is not None:
            result["firstInvalidIndex"] = self.failure.seq
            if self.failure.entry_id is not None:
                result["firstInvalidId"] = self.failure.entry_id
            result["reason"] = self.failure.reason
        if self._newest_matched is not None:
            result["checkpoint"] = self._newest_matched.as_dict()
        return result


async def _run(check: ChainCheck, entries: AsyncIterator[dict[str, Any]]) -> None:
    count = 0
    try:
        async for entry in entries:
            if not check.feed(entry):
                return
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    except StorageError as exc:
        check.fail_unreadable(f"unreadable entry: {exc}")
    finally:
        await close_entries(entries)


async def _run_lines(check: ChainCheck, chunks: AsyncIterator[list[bytes]]) -> None:
    """Check a store's raw lines chunk by chunk (see ``FileTenantEventLog.stored_lines``)."""
    try:
        async for chunk in chunks:
            if not check.feed_lines(chunk):
                return
            await asyncio.sleep(0)
    except StorageError as exc:
        check.fail_unreadable(f"unreadable entry: {exc}")
    finally:
        await close_entries(chunks)


async def close_entries(entries: object) -> None:
    """Release an async generator early (the file store holds a read position until then)."""
    aclose = getattr(entries, "aclose", None)
    if aclose is not None:
        await aclose()


async def verify_full(log: TenantEventLog, checkpoints: Sequence[Checkpoint], signer: CheckpointSigner
                      ) -> dict[str, Any]:
    """Check every entry from genesis and every checkpoint (API.md §7 ``audit/verify``)."""
    check = ChainCheck(log.tenant_id, checkpoints, signer)
    stored_lines = getattr(log, "stored_lines", None)
    if stored_lines is not None:
        await _run_lines(check, stored_lines())
    else:
        await _run(check, log.entries(1))
    return check.finish()


async def verify_fast(log: TenantEventLog, checkpoints: Sequence[Checkpoint], signer: CheckpointSigner
                      ) -> dict[str, Any]:
    """Check the log from the newest checkpoint whose signature verifies (API.md §7 ``audit/verify-fast``).

    Entries before that checkpoint are trusted because the signed hash pins them; a signed checkpoint past the
    head still reveals truncation, and a signed checkpoint the log no longer matches reveals a rewrite.
    """
    tenant = log.tenant_id
    signed = sorted((cp for cp in checkpoints if cp.tenant == tenant and signer.verify(cp)), key=lambda c: c.seq)
    head = await log.head()
    anchor = next((cp for cp in reversed(signed) if cp.seq <= head.seq), None)
    if anchor is None:
        check = ChainCheck(tenant, signed, signer, report_bad_signatures=False)
        await _run(check, log.entries(1))
        result = check.finish()
        result["fromSeq"] = 1
        return result
    entries = log.entries(anchor.seq)
    try:
        try:
            unreadable: str | None
            first = await anext(aiter(entries), None)
        except StorageError as exc:
            first, unreadable = None, str(exc)
        else:
            unreadable = None
        # The anchor entry is checked against itself and the checkpoint; its predecessors are what the signature
        # vouches for, so its own ``prev`` is taken as given.
        prev = first.get("prev") if isinstance(first, dict) else None
        check = ChainCheck(tenant, [cp for cp in signed if cp.seq >= anchor.seq], signer, start_seq=anchor.seq,
                           prev_hash=prev if isinstance(prev, str) else None, report_bad_signatures=False)
        if unreadable is not None:
            check.fail_unreadable(f"unreadable entry: {unreadable}")
        elif first is None:
            check.fail_unreadable("the entry a signed checkpoint points at is missing")
        elif check.feed(first):
            await _run(check, entries)
    finally:
        await close_entries(entries)
    result = check.finish()
    result["fromSeq"] = anchor.seq
    return result
