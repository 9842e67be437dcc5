"""What ``chain_drafts`` builds without a second serialisation or a Python digit loop: each stored line is
exactly ``canonical_json(entry)``, and event ids are the same Crockford digits as before."""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from datetime import date

import pytest

from libervia.eventlog.chain import (
    ENTRY_FIELDS,
    _digits50,
    _digits80,
    canonical_json,
    chain_drafts,
    entry_hash,
    new_event_id,
    new_event_ids,
)
from libervia.storage import EventDraft, LogHead


def test_each_line_is_the_canonical_json_of_its_entry_even_with_id_like_text_before_the_id() -> None:
    drafts = [
        EventDraft("EVT", "Thing", 'x","id":"evt_fake', {"id": "inner", "nested": {"hash": "h", "é": [1, 2.5]}},
                   actor=',"id":"', request_id=None),
        EventDraft('A,"id":"B', "Ent\"ity", "t-2", {}, actor=None, request_id="req-1"),
    ]
    for head in (LogHead(0, None, None), LogHead(41, "ab" * 32, "2026-01-01T00:00:00.000Z")):
        entries, lines = chain_drafts("acme", head, drafts)
        assert lines == [canonical_json(entry) for entry in entries]
        assert [entry["hash"] for entry in entries] == [entry_hash(entry) for entry in entries]
        assert entries[0]["prev"] == head.hash and entries[1]["prev"] == entries[0]["hash"]


def crockford_by_digits(value: int) -> str:
    """The definition: 26 base-32 digits of ``value``, most significant first, in Crockford's alphabet."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * (25 - i))) & 31] for i in range(26))


def test_event_ids_are_26_crockford_digits_of_their_128_bit_value() -> None:
    rng = random.Random(20261201)
    values = [0, 1, 31, 32, (1 << 128) - 1, 1 << 127, *(rng.getrandbits(128) for _ in range(2000))]
    for value in values:   # what the id generator writes: the time part's 10 digits, then the random part's 16
        assert _digits50(value >> 80) + _digits80(value & ((1 << 80) - 1)) == crockford_by_digits(value)
    ids = [new_event_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 30 and i.startswith("evt_0") for i in ids)


def value_of(event_id: str) -> int:
    """An id's 128-bit value, read back digit by digit."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for digit in event_id.removeprefix("evt_"):
        value = value * 32 + alphabet.index(digit)
    return value


def test_generated_ids_carry_the_millisecond_they_were_made_in_and_count_up_within_it() -> None:
    before = time.time_ns() // 1_000_000
    batch = new_event_ids(50)
    after = time.time_ns() // 1_000_000
    values = [value_of(i) for i in batch]
    stamps = {v >> 80 for v in values}
    assert len(stamps) == 1 and before <= stamps.pop() <= after
    randoms = [v & ((1 << 80) - 1) for v in values]
    assert randoms == list(range(randoms[0], randoms[0] + 50))
    assert randoms[0] < 1 << 79   # the top bit stays clear, so counting up cannot overflow
    following = value_of(new_event_id())
    assert following > values[-1]


def test_entries_hold_plain_json_in_the_order_of_entry_fields() -> None:
    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Record:  # orjson writes a dataclass's fields in declaration order, even with sorted keys
        zeta: int = 1
        alpha: str = "a"

    draft = EventDraft("EVT", "Thing", "t", {"tuple": (1, 2), "colour": Colour.RED, "when": date(2026, 12, 1),
                                             "float": 0.1, "text": "ação", "record": Record()})
    entries, lines = chain_drafts("acme", LogHead(0, None, None), [draft])
    assert list(entries[0]) == list(ENTRY_FIELDS)
    assert entries[0]["payload"] == {"tuple": [1, 2], "colour": "red", "when": "2026-12-01", "float": 0.1,
                                     "text": "ação", "record": {"zeta": 1, "alpha": "a"}}
    assert b'"record":{"alpha":"a","zeta":1}' in lines[0]
    assert lines == [canonical_json(entries[0])]
    with pytest.raises(TypeError):
        chain_drafts("acme", LogHead(0, None, None), [EventDraft("EVT", "Thing", "t", {"x": object()})])
