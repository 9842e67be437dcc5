"""DOMAIN.md: autonomy evaluation, one test per rule id, in the documented order, plus use consumption."""

from __future__ import annotations

import pytest

from libervia.core import TenantCore
from libervia.errors import ApiError
from tests.core import bodies
from tests.core.conftest import all_entries, mandate_for


async def _evaluate(core: TenantCore, **changes: object) -> dict:
    return await core.evaluate_autonomy(bodies.avaliacao(**changes), actor="key_agent")


async def test_allowed_within_the_mandate(core: TenantCore) -> None:
    mandate = await mandate_for(core)
    result = await _evaluate(core)
    assert result == {"permitido": True, "regra": "AUTONOMIA_PERMITIDA", "motivo": "the mandate allows this decision",
                      "requer_revisao_humana": False, "mandateId": mandate["id"]}
    last = (await all_entries(core))[-1]
    assert last["evento"] == "AUTONOMY_CHECK_PASSED" and last["entidade_id"] == mandate["id"]


async def test_regra_5_closed_layer_blocked_episode(core: TenantCore) -> None:
    await mandate_for(core)
    with pytest.raises(ApiError) as caught:
        await core.decide(bodies.decisao({"consequencia_relevante": ""}), actor="k")
    result = await _evaluate(core, episodio_id=caught.value.details["episodio_id"])
    assert not result["permitido"] and result["regra"] == "REGRA_5_CLOSED_LAYER_BLOQUEOU"


async def test_vivencia_mode_above_the_mandate(core: TenantCore) -> None:
    await mandate_for(core, modo="VIVENCIA_ASSISTIDA")
    assert (await _evaluate(core))["regra"] == "MODO_SOLICITADO_SEM_MANDATO"
    assert (await _evaluate(core, modo="VIVENCIA_ASSISTIDA"))["permitido"] is True


async def test_regra_6_suspended_mandate_needs_human_review(core: TenantCore) -> None:
    mandate = await mandate_for(core)
    await core.suspend_mandate(mandate["id"], "auditoria", actor="key_admin")
    result = await _evaluate(core)
    assert result["regra"] == "REGRA_6_MANDATO_SUSPENSO" and result["requer_revisao_humana"] is True


async def test_most_recent_mandate_of_any_status_is_evaluated(core: TenantCore) -> None:
    await mandate_for(core)
    newest = await mandate_for(core)
    await core.suspend_mandate(newest["id"], "auditoria", actor="key_admin")
    result = await _evaluate(core)
    assert result["regra"] == "REGRA_6_MANDATO_SUSPENSO" and result["mandateId"] == newest["id"]


async def test_revoked_and_used_up_mandates(core: TenantCore) -> None:
    revoked = await mandate_for(core, "rev")
    await core.revoke_mandate(revoked["id"], "fim", actor="key_admin")
    assert (await _evaluate(core, agentId="rev"))["regra"] == "MANDATE_REVOKED"
    await mandate_for(core, "exp", maxUses=1)
    await _evaluate(core, agentId="exp", consumir=True)
    assert (await _evaluate(core, agentId="exp"))["regra"] == "MANDATE_EXHAUSTED_USES"


async def test_mandate_not_active_yet(core: TenantCore) -> None:
    await mandate_for(core, validFrom="2999-01-01T00:00:00.000Z")
    assert (await _evaluate(core))["regra"] == "MANDATE_NOT_ACTIVE_YET"


async def test_mandate_expired_by_time_is_expired(core: TenantCore) -> None:
    mandate = await mandate_for(core, validFrom="2020-01-01T00:00:00.000Z", validUntil="2021-01-01T00:00:00.000Z")
    assert (await _evaluate(core))["regra"] == "MANDATE_EXPIRED_TIME"
    assert core.state.mandates[mandate["id"]].status == "expired"
    assert core.state.mandates[mandate["id"]].end_reason == "MANDATE_EXPIRED_TIME"
    expirations = [e for e in await all_entries(core) if e["evento"] == "AUTONOMY_EXPIRED"]
    assert (await _evaluate(core))["regra"] == "MANDATE_EXPIRED_TIME"
    assert len([e for e in await all_entries(core) if e["evento"] == "AUTONOMY_EXPIRED"]) == len(expirations) == 1


async def test_mandate_exhausted_uses_is_expired(core: TenantCore) -> None:
    mandate = await mandate_for(core, maxUses=2)
    # Evaluations without consuming do not spend uses.
    assert (await _evaluate(core))["permitido"] is True
    assert (await _evaluate(core, consumir=True))["uses"] == 1
    second = await _evaluate(core, consumir=True)
    assert second["uses"] == 2 and second["mandateExpired"] is True
    record = core.state.mandates[mandate["id"]]
    assert record.status == "expired" and record.uses == 2 and record.end_reason == "MANDATE_EXHAUSTED_USES"
    # Reaching maxUses expired the mandate; later evaluations report why.
    assert (await _evaluate(core))["regra"] == "MANDATE_EXHAUSTED_USES"


async def test_regra_1_ensino_always_blocks(core: TenantCore) -> None:
    await mandate_for(core, modo="ENSINO")
    result = await _evaluate(core, modo="ENSINO")
    assert result["regra"] == "REGRA_1_ENSINO_SEMPRE_BLOQUEIA" and result["requer_revisao_humana"] is True
    assert (await _evaluate(core, agentId="nobody", modo="ENSINO"))["regra"] == "REGRA_1_ENSINO_SEMPRE_BLOQUEIA"


async def test_a_vivencia_mode_without_any_mandate_is_refused_before_rule_2(core: TenantCore) -> None:
    # DOMAIN.md's order: "a VIVENCIA mode requested without a mandate of at least that mode" precedes rule 2.
    result = await _evaluate(core, agentId="nobody")
    assert result["regra"] == "MODO_SOLICITADO_SEM_MANDATO" and "mandateId" not in result
    last = (await all_entries(core))[-1]
    assert last["evento"] == "AUTONOMY_CHECK_FAILED" and last["entidade_id"] == "nobody"


async def test_regra_3_policy_not_allowed(core: TenantCore) -> None:
    await mandate_for(core)
    assert (await _evaluate(core, politica="vendas"))["regra"] == "REGRA_3_POLITICA_NAO_AUTORIZADA"


async def test_regra_4_profile_above_maximum(core: TenantCore) -> None:
    await mandate_for(core)
    assert (await _evaluate(core, perfil_risco="AGRESSIVO"))["regra"] == "REGRA_4_PERFIL_EXCEDE_MAXIMO"
    assert (await _evaluate(core, perfil_risco="CONSERVADOR"))["permitido"] is True


async def test_domain_and_use_case_allow_lists(core: TenantCore) -> None:
    await mandate_for(core, dominios_permitidos=["compras"], casos_uso_permitidos=[1, 2])
    assert (await _evaluate(core, dominio="rh", caso_uso=1))["regra"] == "DOMINIO_NAO_PERMITIDO"
    assert (await _evaluate(core, dominio="compras", caso_uso=3))["regra"] == "CASO_USO_NAO_PERMITIDO"
    assert (await _evaluate(core, dominio="compras", caso_uso=2))["permitido"] is True


async def test_human_trigger_in_context_case_insensitive(core: TenantCore) -> None:
    await mandate_for(core)
    result = await _evaluate(core, contexto="Pedido para FORNECEDOR NOVO da região")
    assert result["regra"] == "GATILHO_HUMANO_ACIONADO" and result["requer_revisao_humana"] is True


async def test_first_match_wins_in_documented_order(core: TenantCore) -> None:
    mandate = await mandate_for(core, modo="VIVENCIA_ASSISTIDA")
    await core.suspend_mandate(mandate["id"], "x", actor="key_admin")
    # Mode above the mandate is checked before the suspension.
    assert (await _evaluate(core))["regra"] == "MODO_SOLICITADO_SEM_MANDATO"
    # Suspension is checked before the policy.
    assert (await _evaluate(core, modo="VIVENCIA_ASSISTIDA", politica="x"))["regra"] == "REGRA_6_MANDATO_SUSPENSO"


async def test_named_mandate_must_belong_to_the_agent(core: TenantCore) -> None:
    other = await mandate_for(core, "someone-else")
    with pytest.raises(ApiError) as caught:
        await _evaluate(core, mandateId=other["id"])
    assert caught.value.status == 404 and caught.value.code == "MANDATE_NOT_FOUND"
