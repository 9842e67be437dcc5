"""Pages of mandates, review cases and consequences are read from the record index, not cut from the whole list;
an agent's mandates are found by the agent's own list of them.

The panel's lists decoded every record of the kind on every request, on the event loop: 35 ms at 3,000
consequences on this machine, and a whole-kind sort in SQLite besides. A page now walks the index in creation
order up to the page and places the records changed since the last flush among its rows; these tests hold it to
the whole list, cut, in every mix of flushed and changed records.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from libervia.core import TenantCore
from libervia.core import core as core_module
from libervia.core import records as records_module
from tests.core import bodies
from tests.core.conftest import CoreHarness, decided, mandate_for
from tests.core.test_domain_restart import _mid_life


async def _whole(core: TenantCore, kind: str) -> list[dict[str, Any]]:
    return await {"mandates": core.mandates, "reviews": core.reviews, "consequences": core.consequences}[kind]()


def _filters(kind: str, whole: list[dict[str, Any]]) -> list[tuple[dict[str, str | None], list[dict[str, Any]]]]:
    """Each filter the listing takes, with what it keeps of the whole list (and one that keeps nothing)."""
    if kind == "consequences":
        field, name, absent = "contrato_id", "contrato_id", "ctr_none"
    else:
        field, name, absent = "status", "status", "NO_SUCH_STATUS"
    values = [*sorted({item[field] for item in whole}), absent]
    return [({}, whole)] + [({name: value}, [item for item in whole if item[field] == value]) for value in values]


async def _pages_match_the_whole_lists(core: TenantCore) -> int:
    checked = 0
    for kind in ("mandates", "reviews", "consequences"):
        for filters, kept in _filters(kind, await _whole(core, kind)):
            for offset in range(len(kept) + 2):
                for limit in (1, 2, 3, 50):
                    answered = await core.listed(kind, offset=offset, limit=limit, **filters)
                    assert answered == (kept[offset:offset + limit], len(kept)), (kind, filters, offset, limit)
                    checked += 1
    mandates = await core.mandates()
    for agent in {m["agentId"] for m in mandates} | {"nobody"}:
        for status in (None, "active", "suspended"):
            assert await core.mandates(agent_id=agent, status=status) == [
                m for m in mandates if m["agentId"] == agent and status in (None, m["status"])]
    return checked


@pytest.mark.parametrize("flush_every", [1, 3, 7, 10**9])
async def test_every_page_is_the_whole_list_cut(harness: CoreHarness, monkeypatch: pytest.MonkeyPatch,
                                                flush_every: int) -> None:
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", flush_every)
    monkeypatch.setattr(records_module, "RECENT_CAPACITY", 1)
    core = await harness.open()
    await _mid_life(core)
    assert await _pages_match_the_whole_lists(core) > 50
    # Changes to records flushed long ago (a mandate used, a review's notes) move nothing in the order.
    for agent in ("b1", "b2"):
        await mandate_for(core, agent)
    contract = (await decided(core))["contrato"]["id"]
    await core.record_consequence(bodies.consequencia(contract), actor="k")
    review = (await core.reviews())[0]["id"]
    await core.update_review_notes(review, "revisto", actor="key_admin")
    await _pages_match_the_whole_lists(core)
    # Status changes not flushed yet: the index still holds the old status, which a filter must not match.
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 10**9)
    open_review = next(r["id"] for r in await core.reviews(status="OPEN"))
    await core.dismiss_review(open_review, "sem efeito", actor="key_admin")
    active = next(m["id"] for m in await core.mandates(status="active"))
    await core.revoke_mandate(active, "fim", actor="key_admin")
    await _pages_match_the_whole_lists(core)
    restarted = await harness.restart(core)
    await _pages_match_the_whole_lists(restarted)


async def test_a_page_decodes_the_page_not_the_kind(harness: CoreHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "FLUSH_RECORDS", 50)
    core = await harness.open()
    for _ in range(120):
        contract = (await decided(core))["contrato"]["id"]
        await core.record_consequence(bodies.consequencia(contract), actor="k")
    decoded: list[str] = []
    decode = core.state.consequencias._decode

    def counted(body: bytes) -> Any:
        decoded.append("one")
        return decode(body)

    monkeypatch.setattr(core.state.consequencias, "_decode", counted)
    page, total = await core.listed("consequences", offset=60, limit=10)
    assert total == 120 and len(page) == 10
    assert len(decoded) <= 10
    decoded.clear()
    page, total = await core.listed("consequences", offset=0, limit=10, contrato_id=contract)
    assert total == 1 and [c["contrato_id"] for c in page] == [contract]
    assert len(decoded) <= 1   # the others were passed over in SQLite, not decoded




async def test_an_index_file_of_the_format_before_pages_is_rebuilt(harness: CoreHarness) -> None:
    """Format 3 had no creation-order index: such a file is rebuilt from the log (and pages answer from it)."""
    core = await harness.open(snapshot_every=5)
    await _mid_life(core)
    await core.close()
    (index_file,) = [p for p in harness.index_dir(core.tenant_id).iterdir() if p.suffix == ".sqlite"]
    with sqlite3.connect(index_file) as db:
        db.execute("DROP INDEX records_by_order")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'format'")
    restarted = await harness.restart(core, snapshot_every=5)
    assert restarted.replayed_from_snapshot is None
    await _pages_match_the_whole_lists(restarted)
    with sqlite3.connect(index_file) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("4",)
