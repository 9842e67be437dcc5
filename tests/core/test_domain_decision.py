"""DOMAIN.md: the decision flow, protocol validation and the closed layer, through a real TenantCore."""

from __future__ import annotations

import pytest

from libervia.core import TenantCore
from libervia.core.model import MINIMUM_OBSERVATIONS as OBSERVACAO_MINIMA
from libervia.core.model import RiskProfile as PerfilRisco
from libervia.core.policy import ClosedLayerRule
from libervia.core.policy import ProtocolInput as ProtocoloInput
from libervia.core.policy import SituationInput as SituacaoInput
from libervia.errors import ApiError
from libervia_plugins.policy_default import DEFAULT_RULES
from tests.core import bodies
from tests.core.conftest import CoreHarness, all_entries, decided, default_policies


async def test_decision_walks_situation_and_episode_and_issues_contract(core: TenantCore) -> None:
    result = await decided(core, actor="key_abc")
    contrato = result["contrato"]
    assert contrato["id"].startswith("ctr_") and result["episodio_id"].startswith("epi_")
    assert contrato["alternativa_autorizada"] == "renegociar"
    assert contrato["limites_execucao"] == bodies.protocolo()["limites_definidos"]
    assert contrato["observacao_minima_requerida"] == list(OBSERVACAO_MINIMA)
    assert contrato["emitido_para"] == "key_abc"
    assert contrato["data_emissao"].endswith("Z") and len(contrato["data_emissao"]) == 24

    episodio = await core.episode(result["episodio_id"])
    assert episodio["estado"] == "DECIDIDO" and episodio["tem_contrato"] is True
    assert episodio["contrato_id"] == contrato["id"] and episodio["decidido_em"]
    situacao = core.state.situacoes[episodio["situacao_id"]]
    assert situacao.status == "DECIDIDA"
    decisao = core.state.decisoes[contrato["decisao_id"]]
    assert decisao.alternativa_escolhida == "renegociar" and decisao.perfil_risco == PerfilRisco.MODERADO

    entries = await all_entries(core)
    assert [e["evento"] for e in entries] == [
        "SITUACAO_CRIADA", "SITUACAO_STATUS_ALTERADO", "SITUACAO_STATUS_ALTERADO", "SITUACAO_STATUS_ALTERADO",
        "EPISODIO_CRIADO", "PROTOCOLO_VALIDADO", "DECISAO_REGISTRADA", "EPISODIO_ESTADO_ALTERADO",
        "SITUACAO_STATUS_ALTERADO", "CONTRATO_EMITIDO"]
    statuses = [(e["payload"]["de"], e["payload"]["para"]) for e in entries
                if e["evento"] == "SITUACAO_STATUS_ALTERADO"]
    assert statuses == [("RASCUNHO", "ABERTA"), ("ABERTA", "ACEITA"), ("ACEITA", "EM_ANALISE"),
                        ("EM_ANALISE", "DECIDIDA")]
    # One atomic append: every entry of the flow carries the same timestamp and request id.
    assert len({e["ts"] for e in entries}) == 1 and {e["request_id"] for e in entries} == {"req-1"}
    assert {e["entidade"] for e in entries} == {"SituacaoDecisoria", "EpisodioDecisao", "DecisionProtocol",
                                                 "DecisaoInstitucional", "ContratoDeDecisao"}


async def test_protocol_problems_are_all_reported_and_recorded(core: TenantCore) -> None:
    body = bodies.decisao(criterios_minimos=[], riscos_considerados=[], limites_definidos=[],
                          perfil_risco=None, alternativas_avaliadas=["só uma"], alternativa_escolhida="outra",
                          memoria_consultada_ids=["epi_never_seen"])
    del body["protocolo"]["perfil_risco"]
    with pytest.raises(ApiError) as caught:
        await core.decide(body, actor="key_x")
    error = caught.value
    assert error.status == 422 and error.code == "PROTOCOL_REJECTED"
    codes = {reason["code"] for reason in error.details["reasons"]}
    assert codes == {"CRITERIOS_MINIMOS_VAZIOS", "RISCOS_CONSIDERADOS_VAZIOS", "LIMITES_DEFINIDOS_VAZIOS",
                     "PERFIL_RISCO_AUSENTE", "ALTERNATIVAS_INSUFICIENTES", "ALTERNATIVA_ESCOLHIDA_NAO_AVALIADA",
                     "MEMORIA_NAO_CONSULTADA"}
    # Recorded, and nothing left stranded: situation REJEITADA, episode ENCERRADO.
    episodio = await core.episode(error.details["episodio_id"])
    assert episodio["estado"] == "ENCERRADO" and episodio["encerrado_em"] and not episodio["tem_contrato"]
    assert core.state.situacoes[error.details["situacao_id"]].status == "REJEITADA"
    protocolo = core.state.protocolos[error.details["protocolo_id"]]
    assert protocolo.estado == "REJEITADO" and len(protocolo.motivos) == 7
    eventos = [e["evento"] for e in await all_entries(core)]
    assert "PROTOCOLO_REJEITADO" in eventos and "DECISAO_REGISTRADA" not in eventos


async def test_missing_chosen_alternative_is_its_own_problem(core: TenantCore) -> None:
    body = bodies.decisao()
    del body["protocolo"]["alternativa_escolhida"]
    with pytest.raises(ApiError) as caught:
        await core.decide(body, actor="k")
    assert [r["code"] for r in caught.value.details["reasons"]] == ["ALTERNATIVA_ESCOLHIDA_AUSENTE"]


async def test_consulted_memory_must_exist_in_the_tenant(core: TenantCore) -> None:
    first = await decided(core)
    second = await core.decide(bodies.decisao(memoria_consultada_ids=[first["episodio_id"]]), actor="k")
    assert second["contrato"]["id"] != first["contrato"]["id"]


async def test_invalid_situation_writes_nothing(core: TenantCore) -> None:
    for change in ({"possibilidade_aprendizado": False}, {"caso_uso_declarado": 6}, {"dominio": "  "}):
        with pytest.raises(ApiError) as caught:
            await core.decide(bodies.decisao(change), actor="k")
        assert caught.value.status == 422 and caught.value.code == "DOMAIN_RULE_VIOLATION"
    assert await all_entries(core) == [] and core.state.seq == 0


# --- closed layer --------------------------------------------------------------------------------------------

def _inputs(situacao_changes: dict | None = None, **protocolo_changes: object) -> tuple[SituacaoInput,
                                                                                      ProtocoloInput]:
    s = bodies.situacao(**(situacao_changes or {}))
    p = bodies.protocolo(**protocolo_changes)
    return (SituacaoInput(s["dominio"], s["contexto"], s["objetivo"], s["incertezas"], s["alternativas"],
                          s["riscos"], s["consequencia_relevante"], s["caso_uso_declarado"], s),
            ProtocoloInput(p["criterios_minimos"], p["riscos_considerados"], p["limites_definidos"],
                           PerfilRisco(p["perfil_risco"]), p["alternativas_avaliadas"], p["alternativa_escolhida"],
                           p))


def _first_block(situacao_changes: dict | None = None, **protocolo_changes: object) -> str | None:
    situacao, protocolo = _inputs(situacao_changes, **protocolo_changes)
    for rule in DEFAULT_RULES:
        blocked, _ = rule.check(situacao, protocolo)
        if blocked:
            return rule.id
    return None


def test_default_rules_are_the_five_of_domain_md_in_order() -> None:
    assert [r.id for r in DEFAULT_RULES] == ["BLOQUEAR_SEM_RISCO", "BLOQUEAR_SEM_ALTERNATIVAS",
                                             "BLOQUEAR_SEM_LIMITES", "BLOQUEAR_CONSERVADOR_SEM_CRITERIOS",
                                             "BLOQUEAR_SEM_CONSEQUENCIA"]
    assert _first_block() is None


def test_rule_sem_risco_needs_both_risks_and_uncertainties_missing() -> None:
    assert _first_block({"riscos": [], "incertezas": []}) == "BLOQUEAR_SEM_RISCO"
    assert _first_block({"riscos": []}) is None
    assert _first_block({"incertezas": []}) is None


def test_rule_sem_alternativas() -> None:
    assert _first_block({"alternativas": [{"descricao": "única"}]}) == "BLOQUEAR_SEM_ALTERNATIVAS"


def test_rule_sem_limites() -> None:
    assert _first_block(limites_definidos=[]) == "BLOQUEAR_SEM_LIMITES"


def test_rule_conservador_sem_criterios() -> None:
    assert _first_block(perfil_risco="CONSERVADOR", criterios_minimos=[]) == "BLOQUEAR_CONSERVADOR_SEM_CRITERIOS"
    assert _first_block(perfil_risco="MODERADO", criterios_minimos=[]) is None


def test_rule_sem_consequencia() -> None:
    assert _first_block({"consequencia_relevante": "   "}) == "BLOQUEAR_SEM_CONSEQUENCIA"


def test_first_failing_rule_wins() -> None:
    assert _first_block({"riscos": [], "incertezas": [], "alternativas": [], "consequencia_relevante": ""},
                        limites_definidos=[]) == "BLOQUEAR_SEM_RISCO"
    assert _first_block({"alternativas": [], "consequencia_relevante": ""}) == "BLOQUEAR_SEM_ALTERNATIVAS"


@pytest.mark.parametrize(("situacao_changes", "rule"), [
    ({"riscos": [], "incertezas": []}, "BLOQUEAR_SEM_RISCO"),
    ({"alternativas": [{"descricao": "única"}]}, "BLOQUEAR_SEM_ALTERNATIVAS"),
    ({"consequencia_relevante": " "}, "BLOQUEAR_SEM_CONSEQUENCIA"),
])
async def test_closed_layer_block_is_recorded_and_ends_the_episode(core: TenantCore, situacao_changes: dict,
                                                                  rule: str) -> None:
    with pytest.raises(ApiError) as caught:
        await core.decide(bodies.decisao(situacao_changes), actor="k")
    error = caught.value
    assert error.status == 422 and error.code == "CLOSED_LAYER_BLOCKED" and error.details["rule"] == rule
    episodio = await core.episode(error.details["episodio_id"])
    assert episodio["estado"] == "ENCERRADO" and episodio["bloqueio"]["regra"] == rule
    assert core.state.situacoes[error.details["situacao_id"]].status == "REJEITADA"
    blocks = [e for e in await all_entries(core) if e["evento"] == "CLOSED_LAYER_BLOQUEOU"]
    assert len(blocks) == 1 and blocks[0]["payload"]["regra"] == rule


async def test_a_tenant_rule_set_decides_what_blocks(harness: CoreHarness) -> None:
    """Rules are a tenant policy: an added rule blocks, and a set without BLOQUEAR_SEM_RISCO lets it pass."""
    no_big_spend = ClosedLayerRule("BLOQUEAR_GASTO_ALTO", "limit above 50k",
                                   lambda s, p: any(lim.get("valor", 0) > 50000 for lim in p.limites_definidos))
    strict = await harness.open("strict", policies=default_policies([*DEFAULT_RULES, no_big_spend]))
    with pytest.raises(ApiError) as caught:
        await strict.decide(bodies.decisao(), actor="k")
    assert caught.value.details["rule"] == "BLOQUEAR_GASTO_ALTO"

    lenient = await harness.open("lenient", policies=default_policies(DEFAULT_RULES[1:]))
    result = await lenient.decide(bodies.decisao({"riscos": [], "incertezas": []}), actor="k")
    assert result["contrato"]["id"].startswith("ctr_")
