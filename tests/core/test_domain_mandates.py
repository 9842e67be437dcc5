"""DOMAIN.md: mandate grant, revoke, suspend and resume with their guards, and the PROC-008 log lines."""

from __future__ import annotations

import pytest
from loguru import logger

from libervia.core import TenantCore
from libervia.core.model import SYSTEM_ACTOR
from libervia.errors import ApiError
from tests.core import bodies
from tests.core.conftest import all_entries, decided, mandate_for


async def test_grant_records_the_mandate(core: TenantCore) -> None:
    mandate = await mandate_for(core, maxUses=3, validUntil="2999-01-01T00:00:00Z")
    assert mandate["id"].startswith("mdt_") and mandate["status"] == "active" and mandate["uses"] == 0
    assert mandate["validUntil"] == "2999-01-01T00:00:00.000Z" and mandate["grantedBy"] == "key_admin"
    entry = (await all_entries(core))[-1]
    assert entry["evento"] == "AUTONOMY_GRANTED" and entry["entidade"] == "AutonomyMandate"


@pytest.mark.parametrize("changes", [{"politicas_permitidas": []}, {"modo": "TOTAL"},
                                     {"validFrom": "2030-01-01T00:00:00Z", "validUntil": "2029-01-01T00:00:00Z"},
                                     {"maxUses": 0}, {"validFrom": "amanhã"}])
async def test_invalid_grant_writes_nothing(core: TenantCore, changes: dict) -> None:
    with pytest.raises(ApiError):
        await core.grant_mandate(bodies.mandato(**changes), actor="key_admin")
    assert core.state.seq == 0


async def test_suspend_resume_revoke_guards(core: TenantCore) -> None:
    mandate_id = (await mandate_for(core))["id"]
    with pytest.raises(ApiError) as caught:
        await core.resume_mandate(mandate_id, "x", actor="key_admin")
    assert caught.value.status == 409
    assert (await core.suspend_mandate(mandate_id, "auditoria", actor="key_admin"))["status"] == "suspended"
    with pytest.raises(ApiError) as caught:
        await core.suspend_mandate(mandate_id, "again", actor="key_admin")
    assert caught.value.status == 409
    assert (await core.resume_mandate(mandate_id, None, actor="key_admin"))["status"] == "active"
    assert (await core.revoke_mandate(mandate_id, "fim", actor="key_admin"))["status"] == "revoked"
    for action in (core.resume_mandate, core.suspend_mandate, core.revoke_mandate):
        with pytest.raises(ApiError) as caught:
            await action(mandate_id, "x", actor="key_admin")
        assert caught.value.status == 409 and caught.value.code == "INVALID_STATE"


async def test_expired_mandate_cannot_be_resumed(core: TenantCore) -> None:
    mandate_id = (await mandate_for(core, maxUses=1))["id"]
    await core.evaluate_autonomy(bodies.avaliacao(consumir=True), actor="k")
    with pytest.raises(ApiError) as caught:
        await core.resume_mandate(mandate_id, "x", actor="key_admin")
    assert caught.value.status == 409


async def _suspended_by_consequence(core: TenantCore) -> tuple[str, str]:
    mandate_id = (await mandate_for(core))["id"]
    contrato_id = (await decided(core))["contrato"]["id"]
    result = await core.record_consequence(bodies.consequencia(contrato_id, agentId="agente-1", autonomyTriggers={
        "severidade": "MEDIA", "violou_limites": True}), actor="k")
    return mandate_id, result["observacao"]["id"]


async def test_resume_after_a_consequence_needs_a_reason_and_a_human(core: TenantCore) -> None:
    mandate_id, _ = await _suspended_by_consequence(core)
    with pytest.raises(ApiError) as caught:
        await core.resume_mandate(mandate_id, "  ", actor="key_admin")
    assert caught.value.status == 422 and caught.value.code == "REASON_REQUIRED"
    for actor in (SYSTEM_ACTOR, None):
        with pytest.raises(ApiError) as caught:
            await core.resume_mandate(mandate_id, "revisado", actor=actor)
        assert caught.value.status == 403 and caught.value.code == "HUMAN_ACTOR_REQUIRED"
    resumed = await core.resume_mandate(mandate_id, "revisado com o time", actor="key_admin")
    assert resumed["status"] == "active" and resumed["suspendedByConsequence"] is None


async def test_suspension_and_resumption_are_logged_for_proc_008(core: TenantCore) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), format="{message}")
    try:
        mandate_id, obs_id = await _suspended_by_consequence(core)
        await core.resume_mandate(mandate_id, "revisado", actor="key_admin")
    finally:
        logger.remove(sink)
    suspended = [line for line in lines if "suspended" in line]
    resumed = [line for line in lines if "resumed" in line]
    assert len(suspended) == 1 and len(resumed) == 1
    for line in (suspended[0], resumed[0]):
        assert core.tenant_id in line and mandate_id in line and obs_id in line


async def test_mandate_history_lists_its_events(core: TenantCore) -> None:
    mandate_id = (await mandate_for(core))["id"]
    await core.evaluate_autonomy(bodies.avaliacao(consumir=True), actor="k")
    await core.suspend_mandate(mandate_id, "auditoria", actor="key_admin")
    detail = await core.mandate(mandate_id)
    assert [h["evento"] for h in detail["history"]] == ["AUTONOMY_GRANTED", "AUTONOMY_CHECK_PASSED",
                                                         "AUTONOMY_USE_CONSUMED", "AUTONOMY_SUSPENDED"]
    assert detail["uses"] == 1 and detail["suspensionReason"] == "auditoria"
