"""The event listing (``GET /api/v1/eventos``) answers from counters and the newest part of the log.

It read and parsed the whole log on every request, to count the matches and keep the newest page: 200 ms a request
at 50,000 events on this machine, growing with the history, for any holder of a public key. Now the totals come
from the projection's counters and the page from a backward read that stops once it is full; what it answers is
checked here against the whole log read the way the listing used to read it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from libervia.core import TenantCore
from libervia.core import core as core_module
from libervia.core.projection import event_summary
from tests.core.conftest import CoreHarness, decided
from tests.core.test_domain_restart import _mid_life


async def _matching_entries(core: TenantCore, tipo: str | None, entidade: str | None) -> list[dict[str, Any]]:
    """Every entry of the log of that type and entity, oldest first."""
    return [entry async for entry in core.log.entries()
            if (tipo is None or entry["evento"] == tipo) and (entidade is None or entry["entidade"] == entidade)]


async def _whole_log_listing(core: TenantCore, tipo: str | None, entidade: str | None, limit: int,
                             offset: int) -> dict[str, Any]:
    """The listing as defined: every matching entry of the log, newest first, then the page."""
    matches = [event_summary(entry) for entry in reversed(await _matching_entries(core, tipo, entidade))]
    return {"eventos": matches[offset:offset + limit], "total": len(matches), "limit": limit, "offset": offset}


async def _every_listing_matches_the_whole_log(core: TenantCore) -> int:
    entries = [entry async for entry in core.log.entries()]
    types = [*sorted({entry["evento"] for entry in entries}), "NUNCA_ACONTECEU"]
    entities = [*sorted({entry["entidade"] for entry in entries if entry["entidade"]}), "Ninguem"]
    total = len(entries)
    checked = 0
    for tipo in [None, *types]:
        for entidade in [None, *entities]:
            for limit, offset in ((50, 0), (1, 0), (7, 3), (200, 0), (3, total - 2), (5, total), (5, total + 9)):
                expected = await _whole_log_listing(core, tipo, entidade, limit, offset)
                answered = await core.events(tipo=tipo, entidade=entidade, limit=limit, offset=offset)
                assert answered == expected, (tipo, entidade, limit, offset)
                oldest = await _matching_entries(core, tipo, entidade)
                assert await core.event_page(tipo=tipo, entidade=entidade, limit=limit, offset=offset,
                                             oldest_first=True) == (oldest[offset:offset + limit], len(oldest))
                checked += 1
    return checked


async def test_every_filter_and_page_answers_what_the_whole_log_says(harness: CoreHarness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Small windows, so that filtered pages take several backward reads even on this short log.
    monkeypatch.setattr(core_module, "EVENT_SCAN_WINDOW", 4)
    monkeypatch.setattr(core_module, "EVENT_SCAN_WINDOW_MAX", 16)
    core = await harness.open()
    await _mid_life(core)
    assert await _every_listing_matches_the_whole_log(core) > 500


async def test_the_counters_behind_the_totals_survive_a_restart_from_the_index(
        harness: CoreHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 1)
    core = await harness.open(snapshot_every=5)
    await _mid_life(core)
    await decided(core)
    restarted = await harness.restart(core, snapshot_every=5)
    assert restarted.replayed_from_snapshot is not None
    assert restarted.replayed_events < restarted.state.seq
    await _every_listing_matches_the_whole_log(restarted)


async def test_an_index_written_before_the_counters_existed_is_rebuilt_not_trusted(harness: CoreHarness) -> None:
    """A state row of format 2 has no counts by entity: reading them as zero would answer ``total: 0``."""
    core = await harness.open(snapshot_every=5)
    await _mid_life(core)
    await core.close()
    index_files = [p for p in Path(harness.index_dir(core.tenant_id)).iterdir() if p.suffix == ".sqlite"]
    assert len(index_files) == 1
    with sqlite3.connect(index_files[0]) as db:
        rows = db.execute("SELECT seq, body FROM states").fetchall()
        assert rows
        for seq, body in rows:
            document = orjson.loads(body)
            document["format"] = 2
            del document["state"]["event_counts_by_entity"]
            db.execute("UPDATE states SET body = ? WHERE seq = ?", (orjson.dumps(document), seq))
    restarted = await harness.restart(core, snapshot_every=5)
    assert restarted.replayed_from_snapshot is None   # the whole log was folded again
    await _every_listing_matches_the_whole_log(restarted)


async def test_a_page_of_the_newest_events_reads_the_page_not_the_history(harness: CoreHarness,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    core = await harness.open()
    for _ in range(300):   # 3,000 events
        await decided(core)
    read: list[int] = []
    entries = core.log.entries

    async def counted(*args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async for entry in entries(*args, **kwargs):
            read.append(entry["seq"])
            yield entry

    monkeypatch.setattr(core.log, "entries", counted)
    page = await core.events(limit=50)
    assert [e["seq"] for e in page["eventos"]] == list(range(3000, 2950, -1)) and page["total"] == 3000
    assert len(read) == 50
    read.clear()
    page = await core.events(limit=20, offset=100)
    assert [e["seq"] for e in page["eventos"]] == list(range(2900, 2880, -1))
    assert len(read) == 20   # the skipped events are not even read
    read.clear()
    entries_page, total = await core.event_page(limit=10, offset=2000, oldest_first=True)
    assert [e["seq"] for e in entries_page] == list(range(2001, 2011)) and total == 3000
    assert len(read) == 10
    read.clear()
    # One event in ten is a contract: the first window is sized by that density.
    page = await core.events(tipo="CONTRATO_EMITIDO", limit=50)
    assert len(page["eventos"]) == 50 and page["total"] == 300
    assert len(read) < 1000


async def test_an_entry_without_an_entity_still_counts_in_the_totals_by_type(harness: CoreHarness) -> None:
    """Another writer (a tool, an older version) may store an entry whose ``entidade`` is null: it counts for its
    type and for the whole log, and is listed, though no entity filter names it."""
    from libervia.storage import EventDraft

    core = await harness.open()
    await decided(core)
    await core.log.append([EventDraft("NOTA_EXTERNA", None, None, {"texto": "de fora"})],  # type: ignore[arg-type]
                          expected_seq=core.state.seq)
    assert (await core.events(tipo="NOTA_EXTERNA"))["total"] == 1
    assert await _every_listing_matches_the_whole_log(core) > 0
