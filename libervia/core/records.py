"""The projection's records, by kind: what changed since the last flush in memory, the rest in the record index.

A :class:`RecordMap` looks like the dict the projection used to keep (``get``, ``[]``, ``in``, ``values()``),
but only the records changed since the last flush (and a few recently read ones) are in memory; every other record
is read from the :class:`~libervia.core.record_index.RecordIndex` when asked, as it was at the state's seq. The
projection marks what it changes with :meth:`RecordMap.edit` / :meth:`RecordMap.add`; commands only read.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

from libervia.core.model import load_record
from libervia.core.record_index import RecordIndex, RecordRow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")

# Clean records kept in memory per kind after a flush or a read: the hot ones (a mandate every decision of its
# agent checks, the contract a consequence is about to be recorded against) are read once, not per command.
RECENT_CAPACITY = 64


class RecordMap(Generic[R]):
    def __init__(self, kind: str, cls: type[R], index: RecordIndex, at_seq: Callable[[], int]) -> None:
        self.kind = kind
        self._cls = cls
        self._index = index
        self._at_seq = at_seq
        self._changed: dict[str, tuple[R, int, int]] = {}        # id -> (record, ord, seq of its last change)
        self._recent: OrderedDict[str, tuple[R, int]] = OrderedDict()   # id -> (record, ord), clean

    # --- reading (commands and queries) --------------------------------------------------------------------------

    def get(self, record_id: str, default: R | None = None) -> R | None:
        found = self._lookup(record_id)
        return found[0] if found is not None else default

    def __getitem__(self, record_id: str) -> R:
        found = self._lookup(record_id)
        if found is None:
            raise KeyError(record_id)
        return found[0]

    def __contains__(self, record_id: object) -> bool:
        return self._lookup(record_id) is not None  # type: ignore[arg-type]

    def values(self) -> list[R]:
        """Every record, in creation order (the order the old dict kept): the index's, with what changed since."""
        merged: dict[str, tuple[int, R]] = {}
        for record_id, order, body in self._index.listing(self.kind, self._at_seq()):
            if record_id not in self._changed:
                merged[record_id] = (order, self._decode(body))
        for record_id, (record, order, _) in self._changed.items():
            merged[record_id] = (order, record)
        return [record for _, record in sorted(merged.values(), key=lambda item: item[0])]

    def page(self, offset: int, limit: int, total: int | None = None, where: tuple[str, str] | None = None
             ) -> tuple[list[R], int]:
        """``values()[offset:offset + limit]`` (of the records whose field ``where[0]`` is ``where[1]``, when
        given) and how many there are: reads and decodes about the page, not every record of the kind. ``total``,
        when the projection counts them, saves counting them in the index.

        The changed records are placed among the index's by their creation order. At most ``len(changed)`` of
        them come before the page, so the page holds none of the index's first ``offset - len(changed)``
        records; those are skipped in the index, and the changed ones before the first row read are counted.
        Every changed record is left out of the index's rows, matching or not: its indexed version is older."""
        leave_out = list(self._changed)
        changed = sorted((order, record_id, record) for record_id, (record, order, _) in self._changed.items()
                         if where is None or getattr(record, where[0]) == where[1])
        if total is None:
            assert where is not None, "the projection counts every record of a kind"
            total = self._index.count_listed(self.kind, self._at_seq(), leave_out=leave_out, where=where) + len(
                changed)
        if limit <= 0 or offset >= total:
            return [], total
        skip = max(0, offset - len(changed))
        rows = self._index.listing_page(self.kind, self._at_seq(), skip=skip, count=offset + limit - skip,
                                        leave_out=leave_out, where=where)
        position = skip
        if skip:
            if not rows:
                return [], total   # fewer records than counted: nothing is at this offset
            first = rows[0][1]
            position += sum(1 for order, _, _ in changed if order < first)
            changed = [item for item in changed if item[0] > first]
        indexed: Iterator[tuple[int, str, R | bytes]] = ((order, record_id, body) for record_id, order, body in rows)
        held: list[tuple[int, str, R | bytes]] = list(changed)
        page: list[R] = []
        for _, _, item in heapq.merge(indexed, held, key=lambda item: item[0]):
            if position >= offset + limit:
                break
            if position >= offset:
                page.append(self._decode(item) if isinstance(item, bytes) else item)
            position += 1
        return page, total

    def _lookup(self, record_id: str) -> tuple[R, int] | None:
        if not isinstance(record_id, str):   # an id from a request body that is not text names no record
            return None
        changed = self._changed.get(record_id)
        if changed is not None:
            return changed[0], changed[1]
        recent = self._recent.get(record_id)
        if recent is not None:
            self._recent.move_to_end(record_id)
            return recent
        row = self._index.fetch(self.kind, record_id, self._at_seq())
        if row is None:
            return None
        found = (self._decode(row[1]), row[0])
        self._remember(record_id, found)
        return found

    def _decode(self, body: bytes) -> R:
        return load_record(self._cls, orjson.loads(body))

    def _remember(self, record_id: str, found: tuple[R, int]) -> None:
        self._recent[record_id] = found
        while len(self._recent) > RECENT_CAPACITY:
            self._recent.popitem(last=False)

    # --- changing (the projection only) --------------------------------------------------------------------------

    def add(self, record: R, seq: int) -> None:
        """A record created by the event at ``seq``."""
        record_id: str = getattr(record, "id")  # noqa: B009 - every record type has an id; the bound cannot say so
        self._recent.pop(record_id, None)
        self._changed[record_id] = (record, seq, seq)

    def edit(self, record_id: str, seq: int) -> R | None:
        """The record, to be changed in place by the event at ``seq`` (None when there is none)."""
        changed = self._changed.get(record_id)
        if changed is not None:
            self._changed[record_id] = (changed[0], changed[1], seq)
            return changed[0]
        found = self._lookup(record_id)
        if found is None:
            return None
        self._recent.pop(record_id, None)
        self._changed[record_id] = (found[0], found[1], seq)
        return found[0]

    # --- flushing ------------------------------------------------------------------------------------------------

    @property
    def changed_count(self) -> int:
        return len(self._changed)

    @property
    def resident_count(self) -> int:
        """Records held in memory (changed or recently read): bounded by flushes, not by history."""
        return len(self._changed) + len(self._recent)

    def changed_rows(self, encode: Callable[[R], bytes]) -> list[RecordRow]:
        return [RecordRow(self.kind, record_id, seq, order, encode(record))
                for record_id, (record, order, seq) in self._changed.items()]

    def changed_records(self) -> Iterator[R]:
        return (record for record, _, _ in self._changed.values())

    def flushed(self) -> None:
        """The changed records are in the index now: keep the newest few as recently read, drop the rest."""
        for record_id, (record, order, _) in list(self._changed.items())[-RECENT_CAPACITY:]:
            self._remember(record_id, (record, order))
        self._changed.clear()

    def forget(self) -> None:
        """Drop everything held in memory (the state is being rebuilt from the index and the log)."""
        self._changed.clear()
        self._recent.clear()


def encode_record(record: Any) -> bytes:
    return orjson.dumps(record)
