"""DOMAIN.md: consequences (anti-fraud evidence, follow-ups) and the consequence → mandate policy."""

from __future__ import annotations

import pytest

from libervia.core import TenantCore
from libervia.errors import ApiError
from tests.core import bodies
from tests.core.conftest import all_entries, decided, mandate_for


async def _contract(core: TenantCore) -> str:
    return (await decided(core))["contrato"]["id"]


async def test_consequence_is_recorded_against_the_contract(core: TenantCore) -> None:
    contrato_id = await _contract(core)
    result = await core.record_consequence(bodies.consequencia(contrato_id), actor="k")
    observacao = result["observacao"]
    assert observacao["id"].startswith("obs_") and observacao["contrato_id"] == contrato_id
    assert result["autonomy"]["action"] == "NONE"
    assert (await core.consequence(observacao["id"]))["percebida"]["sinal"] == "POSITIVO"


async def test_evidence_must_include_every_required_observation(core: TenantCore) -> None:
    contrato_id = await _contract(core)
    before = core.state.seq
    body = bodies.consequencia(contrato_id, evidencias_minimas=["Impacto Técnico observado", "Evidências coletadas"])
    with pytest.raises(ApiError) as caught:
        await core.record_consequence(body, actor="k")
    assert caught.value.status == 422 and caught.value.code == "EVIDENCE_MISSING"
    assert caught.value.details["missing"] == ["Impacto Operacional observado", "Persistência avaliada"]
    assert core.state.seq == before
    # Case and spacing do not matter; the words do.
    relaxed = bodies.consequencia(contrato_id, evidencias_minimas=[
        "impacto técnico OBSERVADO", " Impacto  Operacional observado", "evidências coletadas",
        "PERSISTÊNCIA AVALIADA", "extra"])
    assert (await core.record_consequence(relaxed, actor="k"))["observacao"]["id"]


@pytest.mark.parametrize("broken", [{"observada": {"descricao": " "}}, {"percebida": {"descricao": "x"}},
                                    {"percebida": {"sinal": "NEGATIVO"}}])
async def test_required_descriptions_and_signal(core: TenantCore, broken: dict) -> None:
    contrato_id = await _contract(core)
    with pytest.raises(ApiError) as caught:
        await core.record_consequence(bodies.consequencia(contrato_id, **broken), actor="k")
    assert caught.value.status == 422


async def test_follow_up_must_reference_an_observation_of_the_same_contract(core: TenantCore) -> None:
    first_contract, other_contract = await _contract(core), await _contract(core)
    first = (await core.record_consequence(bodies.consequencia(first_contract), actor="k"))["observacao"]["id"]
    follow = await core.record_consequence(bodies.consequencia(first_contract, observacao_anterior_id=first),
                                           actor="k")
    assert follow["observacao"]["observacao_anterior_id"] == first
    for wrong in (first, "obs_unknown"):
        contract = other_contract if wrong == first else first_contract
        with pytest.raises(ApiError) as caught:
            await core.record_consequence(bodies.consequencia(contract, observacao_anterior_id=wrong), actor="k")
        assert caught.value.code == "INVALID_FOLLOW_UP"


async def test_unknown_contract_is_404(core: TenantCore) -> None:
    with pytest.raises(ApiError) as caught:
        await core.record_consequence(bodies.consequencia("ctr_nope"), actor="k")
    assert caught.value.status == 404 and caught.value.code == "CONTRACT_NOT_FOUND"


async def test_consequences_are_accepted_until_and_after_the_episode_closes(core: TenantCore) -> None:
    result = await decided(core)
    await core.observe(result["episodio_id"], actor="k")
    await core.close_episode(result["episodio_id"], actor="k")
    recorded = await core.record_consequence(bodies.consequencia(result["contrato"]["id"]), actor="k")
    assert recorded["observacao"]["episodio_id"] == result["episodio_id"]


# --- the consequence policy ----------------------------------------------------------------------------------

async def _with_triggers(core: TenantCore, mandate_modo: str = "VIVENCIA_AUTONOMA", **triggers: object) -> dict:
    mandate = await mandate_for(core, modo=mandate_modo)
    contrato_id = await _contract(core)
    result = await core.record_consequence(
        bodies.consequencia(contrato_id, agentId="agente-1", autonomyTriggers=triggers), actor="key_ops")
    return {"mandate": core.state.mandates[mandate["id"]], "result": result}


async def test_branch_1_critica_revokes(core: TenantCore) -> None:
    out = await _with_triggers(core, severidade="CRITICA", categoria="OPERACIONAL", violou_limites=True)
    assert out["result"]["autonomy"]["action"] == "REVOKE"
    assert out["result"]["autonomy"]["rule"] == "CONSEQ_1_CRITICA_REVOGA"
    assert out["mandate"].status == "revoked"
    assert [e for e in await all_entries(core) if e["evento"] == "AUTONOMY_REVOKED_BY_CONSEQUENCE"]


async def test_branch_2_violated_limits_suspends_and_opens_review(core: TenantCore) -> None:
    out = await _with_triggers(core, severidade="MEDIA", categoria="FINANCEIRA", violou_limites=True)
    autonomy = out["result"]["autonomy"]
    assert autonomy["action"] == "SUSPEND" and autonomy["reviewCaseId"].startswith("rev_")
    mandate = out["mandate"]
    assert mandate.status == "suspended"
    assert mandate.suspended_by_consequence == out["result"]["observacao"]["id"]
    review = await core.review(autonomy["reviewCaseId"])
    assert review["status"] == "OPEN" and review["mandateId"] == mandate.id
    eventos = [e["evento"] for e in await all_entries(core)]
    assert {"AUTONOMY_SUSPENDED", "AUTONOMY_HUMAN_REVIEW_FLAGGED", "HUMAN_REVIEW_CASE_OPENED"} <= set(eventos)


async def test_branch_3_relevant_loss_degrades_one_step(core: TenantCore) -> None:
    out = await _with_triggers(core, severidade="ALTA", categoria="FINANCEIRA", perda_relevante=True)
    assert out["result"]["autonomy"]["action"] == "DEGRADE"
    assert out["mandate"].modo == "VIVENCIA_ASSISTIDA" and out["mandate"].status == "active"


async def test_branch_3_needs_high_severity(core: TenantCore) -> None:
    out = await _with_triggers(core, severidade="MEDIA", categoria="FINANCEIRA", perda_relevante=True)
    assert out["result"]["autonomy"]["action"] == "NONE" and out["mandate"].modo == "VIVENCIA_AUTONOMA"


@pytest.mark.parametrize("categoria", ["LEGAL", "ETICA"])
async def test_branch_4_legal_or_ethical_opens_review(core: TenantCore, categoria: str) -> None:
    out = await _with_triggers(core, severidade="ALTA", categoria=categoria)
    autonomy = out["result"]["autonomy"]
    assert autonomy["action"] == "REVIEW" and autonomy["rule"] == "CONSEQ_4_LEGAL_ETICA_REVISAO"
    assert out["mandate"].status == "active"
    assert (await core.review(autonomy["reviewCaseId"]))["consequencia_id"] == out["result"]["observacao"]["id"]


async def test_branch_5_otherwise_no_action(core: TenantCore) -> None:
    out = await _with_triggers(core, severidade="BAIXA", categoria="LEGAL", reversivel=True)
    assert out["result"]["autonomy"] == {"action": "NONE", "rule": "CONSEQ_5_SEM_ACAO",
                                         "reason": "no action required"}
    assert out["mandate"].status == "active"


async def test_mandate_out_of_service_is_left_as_it_is(core: TenantCore) -> None:
    first = await _with_triggers(core, severidade="MEDIA", violou_limites=True)
    contrato_id = await _contract(core)
    seq = core.state.seq
    again = await core.record_consequence(bodies.consequencia(contrato_id, agentId="agente-1", autonomyTriggers={
        "severidade": "CRITICA", "categoria": "OUTRA"}), actor="k")
    autonomy = again["autonomy"]
    assert autonomy["action"] == "REVOKE" and autonomy["alreadyApplied"] is True
    assert core.state.mandates[first["mandate"].id].status == "suspended"
    assert core.state.seq == seq + 1  # only the consequence itself was recorded


async def test_triggers_for_an_agent_without_mandate_change_nothing(core: TenantCore) -> None:
    contrato_id = await _contract(core)
    result = await core.record_consequence(bodies.consequencia(contrato_id, agentId="ghost", autonomyTriggers={
        "severidade": "CRITICA"}), actor="k")
    assert result["autonomy"]["applied"] is False
