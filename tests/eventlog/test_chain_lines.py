"""The stored line ``chain_drafts`` builds next to each entry is exactly ``canonical_json(entry)``."""

from __future__ import annotations

from libervia.eventlog.chain import canonical_json, chain_drafts, entry_hash
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
