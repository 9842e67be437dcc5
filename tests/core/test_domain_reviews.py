"""DOMAIN.md: human review cases — OPEN → RESOLVED | DISMISSED, notes, effects reported one by one."""

from __future__ import annotations

import pytest

from libervia.core import TenantCore
from libervia.errors import ApiError
from tests.core import bodies
from tests.core.conftest import decided, mandate_for


async def _open_case(core: TenantCore, modo: str = "VIVENCIA_AUTONOMA") -> tuple[str, str, str]:
    """A mandate suspended by a consequence, with its review case: (review id, mandate id, consequence id)."""
    mandate_id = (await mandate_for(core, modo=modo))["id"]
    contrato_id = (await decided(core))["contrato"]["id"]
    result = await core.record_consequence(bodies.consequencia(contrato_id, agentId="agente-1", autonomyTriggers={
        "severidade": "MEDIA", "violou_limites": True}), actor="k")
    return result["autonomy"]["reviewCaseId"], mandate_id, result["observacao"]["id"]


async def test_resolve_applies_effects_one_by_one(core: TenantCore) -> None:
    review_id, mandate_id, _ = await _open_case(core)
    resolved = await core.resolve_review(review_id, {"resolution": "APPROVE", "notes": "falso positivo",
                                                     "effects": ["KEEP_SUSPENDED", "RESUME_MANDATE",
                                                                 "RESUME_MANDATE", "DEGRADE_MODE"]},
                                         actor="key_admin")
    assert resolved["status"] == "RESOLVED" and resolved["resolution"] == "APPROVE"
    assert [(e["effect"], e["ok"]) for e in resolved["effects"]] == [
        ("KEEP_SUSPENDED", True), ("RESUME_MANDATE", True), ("RESUME_MANDATE", False), ("DEGRADE_MODE", True)]
    assert resolved["effects"][2]["error"] == "INVALID_STATE"
    mandate = core.state.mandates[mandate_id]
    assert mandate.status == "active" and mandate.modo == "VIVENCIA_ASSISTIDA"
    assert core.state.reviews[review_id].effects == resolved["effects"]


async def test_revoke_effect_then_resume_fails(core: TenantCore) -> None:
    review_id, mandate_id, _ = await _open_case(core)
    resolved = await core.resolve_review(review_id, {"resolution": "REJECT", "notes": "grave",
                                                     "effects": ["REVOKE_MANDATE", "RESUME_MANDATE"]},
                                         actor="key_admin")
    assert [e["ok"] for e in resolved["effects"]] == [True, False]
    assert core.state.mandates[mandate_id].status == "revoked"


async def test_notes_required_unless_no_action(core: TenantCore) -> None:
    review_id, _, _ = await _open_case(core)
    with pytest.raises(ApiError) as caught:
        await core.resolve_review(review_id, {"resolution": "APPROVE"}, actor="key_admin")
    assert caught.value.status == 422 and caught.value.code == "NOTES_REQUIRED"
    resolved = await core.resolve_review(review_id, {"resolution": "NO_ACTION"}, actor="key_admin")
    assert resolved["status"] == "RESOLVED"


async def test_resume_effect_without_notes_reports_reason_required(core: TenantCore) -> None:
    review_id, mandate_id, _ = await _open_case(core)
    resolved = await core.resolve_review(review_id, {"resolution": "NO_ACTION", "effects": ["RESUME_MANDATE"]},
                                         actor="key_admin")
    assert resolved["effects"][0]["ok"] is False and resolved["effects"][0]["error"] == "REASON_REQUIRED"
    assert core.state.mandates[mandate_id].status == "suspended"


async def test_dismiss_needs_notes_and_only_an_open_case(core: TenantCore) -> None:
    review_id, _, _ = await _open_case(core)
    with pytest.raises(ApiError) as caught:
        await core.dismiss_review(review_id, " ", actor="key_admin")
    assert caught.value.code == "NOTES_REQUIRED"
    assert (await core.dismiss_review(review_id, "sem impacto", actor="key_admin"))["status"] == "DISMISSED"
    for attempt in (core.dismiss_review(review_id, "again", actor="key_admin"),
                    core.resolve_review(review_id, {"resolution": "NO_ACTION"}, actor="key_admin")):
        with pytest.raises(ApiError) as caught:
            await attempt
        assert caught.value.status == 409 and caught.value.code == "INVALID_STATE"


async def test_notes_can_be_amended_in_any_state(core: TenantCore) -> None:
    review_id, _, _ = await _open_case(core)
    await core.update_review_notes(review_id, "primeira nota", actor="key_admin")
    await core.resolve_review(review_id, {"resolution": "APPROVE", "notes": "ok"}, actor="key_admin")
    amended = await core.update_review_notes(review_id, "corrigido", actor="key_admin")
    assert amended["status"] == "RESOLVED" and amended["notes"] == "corrigido"
    assert [h["notes"] for h in amended["notes_history"]] == ["primeira nota", "ok"]


async def test_at_most_one_open_case_per_consequence(core: TenantCore) -> None:
    review_id, _, obs_id = await _open_case(core)
    with pytest.raises(ApiError) as caught:
        await core.open_review({"consequencia_id": obs_id, "motivo": "segunda opinião"}, actor="key_admin")
    assert caught.value.status == 409 and caught.value.code == "REVIEW_ALREADY_OPEN"
    await core.dismiss_review(review_id, "resolvido fora", actor="key_admin")
    reopened = await core.open_review({"consequencia_id": obs_id, "motivo": "segunda opinião"}, actor="key_admin")
    assert reopened["status"] == "OPEN" and reopened["id"] != review_id


async def test_unknown_review_is_404(core: TenantCore) -> None:
    with pytest.raises(ApiError) as caught:
        await core.resolve_review("rev_nope", {"resolution": "NO_ACTION"}, actor="key_admin")
    assert caught.value.status == 404 and caught.value.code == "REVIEW_NOT_FOUND"
