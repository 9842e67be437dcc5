"""The decision flow's commands: deciding, following an episode, and recording its consequences (DOMAIN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libervia.clock import format_iso
from libervia.core.command_kit import (
    Batch,
    CommandBase,
    Outcome,
    as_list,
    blank,
    check_transition,
    command,
    enum_or_none,
    normalise,
)
from libervia.core.model import (
    EPISODE_TRANSITIONS,
    MINIMUM_OBSERVATIONS,
    SITUATION_TRANSITIONS,
    SYSTEM_ACTOR,
    Consequence,
    ConsequenceAction,
    Contract,
    Decision,
    DecisionProtocol,
    Entity,
    Episode,
    EpisodeState,
    EventType,
    MandateStatus,
    ProtocolState,
    RiskProfile,
    Situation,
    SituationStatus,
    new_id,
)
from libervia.core.policy import (
    AutonomyTriggers,
    ProtocolInput,
    SituationInput,
    run_closed_layer,
)
from libervia.core.projection import CoreState
from libervia.errors import domain_error, invalid_state, not_found, validation_error


class DecisionCommands(CommandBase):
    # --- the decision flow ---------------------------------------------------------------------------------------

    @command
    def decide(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
               now: datetime) -> Outcome:
        situation_raw = body.get("situacao")
        protocol_raw = body.get("protocolo")
        if not isinstance(situation_raw, dict) or not isinstance(protocol_raw, dict):
            raise validation_error([{"path": "$", "message": "situacao and protocolo must be objects"}])
        situation_in = self._situation_input(situation_raw)
        at = format_iso(now)
        batch = Batch(actor, request_id)
        sit_id, epi_id, prt_id = new_id("sit"), new_id("epi"), new_id("prt")

        situation = Situation(
            id=sit_id, status=SituationStatus.RASCUNHO, dominio=situation_in.dominio, contexto=situation_in.contexto,
            objetivo=situation_in.objetivo, incertezas=list(situation_in.incertezas),
            alternativas=list(situation_in.alternativas), riscos=list(situation_in.riscos),
            urgencia=situation_raw.get("urgencia"), capacidade_absorcao=situation_raw.get("capacidade_absorcao"),
            consequencia_relevante=situation_in.consequencia_relevante, possibilidade_aprendizado=True,
            caso_uso_declarado=situation_in.caso_uso_declarado, criada_em=at)
        batch.add(EventType.SITUACAO_CRIADA, Entity.SITUATION, sit_id, {"situacao": situation})
        status = SituationStatus.RASCUNHO
        for target in (SituationStatus.ABERTA, SituationStatus.ACEITA, SituationStatus.EM_ANALISE):
            self._situation_status_event(batch, sit_id, None, status, target, at)
            status = target
        episode = Episode(id=epi_id, situacao_id=sit_id, estado=EpisodeState.CRIADO, criado_em=at)
        batch.add(EventType.EPISODIO_CRIADO, Entity.EPISODE, epi_id, {"episodio_id": epi_id, "episodio": episode})

        problems = self._protocol_problems(protocol_raw)
        protocol = DecisionProtocol(
            id=prt_id, episodio_id=epi_id,
            estado=ProtocolState.REJEITADO if problems else ProtocolState.VALIDADO,
            criterios_minimos=as_list(protocol_raw.get("criterios_minimos")) or [],
            riscos_considerados=as_list(protocol_raw.get("riscos_considerados")) or [],
            limites_definidos=as_list(protocol_raw.get("limites_definidos")) or [],
            perfil_risco=enum_or_none(RiskProfile, protocol_raw.get("perfil_risco")),
            alternativas_avaliadas=[a for a in as_list(protocol_raw.get("alternativas_avaliadas")) or []
                                    if isinstance(a, str)],
            alternativa_escolhida=protocol_raw.get("alternativa_escolhida")
            if isinstance(protocol_raw.get("alternativa_escolhida"), str) else None,
            memoria_consultada_ids=[m for m in as_list(protocol_raw.get("memoria_consultada_ids")) or []
                                    if isinstance(m, str)],
            motivos=[p["message"] for p in problems], validado_em=at)
        refs = {"situacao_id": sit_id, "episodio_id": epi_id, "protocolo_id": prt_id}

        if problems:
            batch.add(EventType.PROTOCOLO_REJEITADO, Entity.PROTOCOL, prt_id,
                      {"episodio_id": epi_id, "protocolo": protocol, "problemas": problems})
            self._abandon(batch, sit_id, epi_id, at)
            error = domain_error("PROTOCOL_REJECTED", f"The decision protocol has {len(problems)} problem(s).",
                                 details={"reasons": problems, **refs})
            return Outcome(batch.drafts, lambda _s: {}, error)

        assert protocol.perfil_risco is not None and protocol.alternativa_escolhida is not None
        batch.add(EventType.PROTOCOLO_VALIDADO, Entity.PROTOCOL, prt_id,
                  {"episodio_id": epi_id, "protocolo": protocol})
        protocol_in = ProtocolInput(
            criterios_minimos=protocol.criterios_minimos, riscos_considerados=protocol.riscos_considerados,
            limites_definidos=protocol.limites_definidos, perfil_risco=protocol.perfil_risco,
            alternativas_avaliadas=protocol.alternativas_avaliadas,
            alternativa_escolhida=protocol.alternativa_escolhida, raw=protocol_raw)
        block = run_closed_layer(self.policies.closed_layer, situation_in, protocol_in)
        if block is not None:
            batch.add(EventType.CLOSED_LAYER_BLOQUEOU, Entity.EPISODE, epi_id,
                      {**refs, "regra": block.rule, "motivo": block.reason})
            self._abandon(batch, sit_id, epi_id, at)
            error = domain_error("CLOSED_LAYER_BLOCKED", f"Blocked by closed-layer rule {block.rule}: {block.reason}",
                                 details={"rule": block.rule, "reason": block.reason, **refs})
            return Outcome(batch.drafts, lambda _s: {}, error)

        dec_id, ctr_id = new_id("dec"), new_id("ctr")
        decision = Decision(id=dec_id, episodio_id=epi_id, protocolo_id=prt_id,
                          alternativa_escolhida=protocol.alternativa_escolhida, perfil_risco=protocol.perfil_risco,
                          criterios=protocol.criterios_minimos, limites=protocol.limites_definidos,
                          registrada_em=at, registrada_por=actor)
        batch.add(EventType.DECISAO_REGISTRADA, Entity.DECISION, dec_id, {"episodio_id": epi_id, "decisao": decision})
        self._episode_state_event(batch, epi_id, EpisodeState.CRIADO, EpisodeState.DECIDIDO, at)
        self._situation_status_event(batch, sit_id, epi_id, SituationStatus.EM_ANALISE, SituationStatus.DECIDIDA, at)
        contract = Contract(id=ctr_id, episodio_id=epi_id, decisao_id=dec_id,
                            alternativa_autorizada=protocol.alternativa_escolhida,
                            limites_execucao=protocol.limites_definidos,
                            condicoes_obrigatorias=protocol.criterios_minimos,
                            observacao_minima_requerida=list(MINIMUM_OBSERVATIONS), data_emissao=at,
                            emitido_para=actor)
        batch.add(EventType.CONTRATO_EMITIDO, Entity.CONTRACT, ctr_id, {"episodio_id": epi_id, "contrato": contract})

        def respond(state: CoreState) -> dict[str, Any]:
            return {"contrato": state.contratos[ctr_id].to_api(), "episodio_id": epi_id,
                    "metadados": {**refs, "decisao_id": dec_id, "tenant": self.tenant_id,
                                  "request_id": request_id, "eventos": len(batch.drafts)}}

        return Outcome(batch.drafts, respond)

    def _situation_input(self, raw: dict[str, Any]) -> SituationInput:
        """The requirements the closed layer does not own; the ones it owns (risks and uncertainties,
        alternatives, a relevant consequence) are left to the tenant's rules so a tenant policy decides them."""
        problems = [{"path": f"$.situacao.{name}", "message": f"{name} must be a non-blank string"}
                    for name in ("dominio", "contexto", "objetivo") if blank(raw.get(name))]
        for name in ("incertezas", "alternativas", "riscos"):
            if as_list(raw.get(name)) is None:
                problems.append({"path": f"$.situacao.{name}", "message": f"{name} must be an array"})
        if not isinstance(raw.get("consequencia_relevante"), str):
            problems.append({"path": "$.situacao.consequencia_relevante", "message": "must be a string"})
        if raw.get("possibilidade_aprendizado") is not True:
            problems.append({"path": "$.situacao.possibilidade_aprendizado",
                             "message": "a situation must allow learning (possibilidade_aprendizado = true)"})
        caso = raw.get("caso_uso_declarado")
        if isinstance(caso, bool) or not isinstance(caso, int) or not 1 <= caso <= 5:
            problems.append({"path": "$.situacao.caso_uso_declarado", "message": "must be an integer from 1 to 5"})
        if problems:
            raise domain_error("DOMAIN_RULE_VIOLATION", "The situation does not meet its requirements.",
                               details=problems)
        assert isinstance(caso, int)
        return SituationInput(dominio=raw["dominio"], contexto=raw["contexto"], objetivo=raw["objetivo"],
                             incertezas=raw["incertezas"], alternativas=raw["alternativas"], riscos=raw["riscos"],
                             consequencia_relevante=raw["consequencia_relevante"], caso_uso_declarado=caso,
                             raw=raw)

    def _protocol_problems(self, raw: dict[str, Any]) -> list[dict[str, str]]:
        """Every problem of the protocol, not just the first."""
        problems: list[dict[str, str]] = []

        def problem(code: str, path: str, message: str) -> None:
            problems.append({"code": code, "field": f"protocolo.{path}", "message": message})

        for name, code in (("criterios_minimos", "CRITERIOS_MINIMOS_VAZIOS"),
                           ("riscos_considerados", "RISCOS_CONSIDERADOS_VAZIOS"),
                           ("limites_definidos", "LIMITES_DEFINIDOS_VAZIOS")):
            if not as_list(raw.get(name)):
                problem(code, name, f"{name} must list at least one item")
        if enum_or_none(RiskProfile, raw.get("perfil_risco")) is None:
            problem("PERFIL_RISCO_AUSENTE", "perfil_risco", "perfil_risco is missing")
        avaliadas = [a for a in as_list(raw.get("alternativas_avaliadas")) or [] if isinstance(a, str)]
        if len(avaliadas) < 2:
            problem("ALTERNATIVAS_INSUFICIENTES", "alternativas_avaliadas",
                    "at least two alternatives must be evaluated")
        escolhida = raw.get("alternativa_escolhida")
        if blank(escolhida):
            problem("ALTERNATIVA_ESCOLHIDA_AUSENTE", "alternativa_escolhida", "alternativa_escolhida is missing")
        elif escolhida not in avaliadas:
            problem("ALTERNATIVA_ESCOLHIDA_NAO_AVALIADA", "alternativa_escolhida",
                    "alternativa_escolhida is not among alternativas_avaliadas")
        for memory_id in as_list(raw.get("memoria_consultada_ids")) or []:
            if not isinstance(memory_id, str) or not self._is_memory(memory_id):
                problem("MEMORIA_NAO_CONSULTADA", "memoria_consultada_ids",
                        f"memory id {memory_id!r} is not in this tenant's memory")
        return problems

    def _is_memory(self, memory_id: str) -> bool:
        """Institutional memory: what this tenant has recorded before (episodes, decisions, contracts,
        consequences, situations)."""
        s = self.state
        return any(memory_id in records for records in
                   (s.episodios, s.decisoes, s.contratos, s.consequencias, s.situacoes))

    def _abandon(self, batch: Batch, sit_id: str, epi_id: str, at: str) -> None:
        """No decision can be made: nothing is left stranded half-way."""
        self._situation_status_event(batch, sit_id, epi_id, SituationStatus.EM_ANALISE, SituationStatus.REJEITADA, at)
        self._episode_state_event(batch, epi_id, EpisodeState.CRIADO, EpisodeState.ENCERRADO, at)

    @staticmethod
    def _situation_status_event(batch: Batch, sit_id: str, epi_id: str | None, old: SituationStatus,
                         new: SituationStatus, at: str) -> None:
        check_transition(SITUATION_TRANSITIONS, old, new, f"Situation {sit_id}")
        batch.add(EventType.SITUACAO_STATUS_ALTERADO, Entity.SITUATION, sit_id,
                  {"situacao_id": sit_id, "episodio_id": epi_id, "de": old, "para": new, "em": at})

    @staticmethod
    def _episode_state_event(batch: Batch, epi_id: str, old: EpisodeState, new: EpisodeState, at: str) -> None:
        check_transition(EPISODE_TRANSITIONS, old, new, f"Episode {epi_id}")
        batch.add(EventType.EPISODIO_ESTADO_ALTERADO, Entity.EPISODE, epi_id,
                  {"episodio_id": epi_id, "de": old, "para": new, "em": at})

    # --- episodes ------------------------------------------------------------------------------------------------

    @command
    def observe(self, episodio_id: str, *, actor: str | None, request_id: str | None, now: datetime) -> Outcome:
        return self._advance_episode(episodio_id, EpisodeState.DECIDIDO, EpisodeState.EM_OBSERVACAO,
                                     SituationStatus.EM_OBSERVACAO, actor, request_id, now)

    @command
    def close_episode(self, episodio_id: str, *, actor: str | None, request_id: str | None,
                      now: datetime) -> Outcome:
        return self._advance_episode(episodio_id, EpisodeState.EM_OBSERVACAO, EpisodeState.ENCERRADO,
                                     SituationStatus.ENCERRADA, actor, request_id, now)

    def _advance_episode(self, episodio_id: str, old: EpisodeState, new: EpisodeState,
                         situation_new: SituationStatus, actor: str | None, request_id: str | None,
                         now: datetime) -> Outcome:
        episode = self.episode(episodio_id)
        if episode.estado != old:
            raise invalid_state(f"Episode {episodio_id} is {episode.estado}; only {old} can move to {new}.",
                                details={"estado": episode.estado, "esperado": old})
        situation = self.state.situacoes[episode.situacao_id]
        at = format_iso(now)
        batch = Batch(actor, request_id)
        self._episode_state_event(batch, episodio_id, old, new, at)
        self._situation_status_event(batch, situation.id, episodio_id, situation.status, situation_new, at)
        return Outcome(batch.drafts, lambda state: state.episodios[episodio_id].to_api())

    # --- consequences --------------------------------------------------------------------------------------------

    @command
    def record_consequence(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                           now: datetime) -> Outcome:
        contract = self.state.contratos.get(body.get("contrato_id") or "")
        if contract is None:
            raise not_found("CONTRACT_NOT_FOUND", f"Contract {body.get('contrato_id')} does not exist.")
        episode = self.state.episodios[contract.episodio_id]
        if episode.estado not in (EpisodeState.DECIDIDO, EpisodeState.EM_OBSERVACAO, EpisodeState.ENCERRADO):
            raise invalid_state(f"Episode {episode.id} is {episode.estado}; consequences need a decided episode.")
        observada, percebida = body.get("observada"), body.get("percebida")
        problems = []
        if not isinstance(observada, dict) or blank(observada.get("descricao")):
            problems.append({"path": "$.observada.descricao", "message": "observada.descricao is required"})
        if not isinstance(percebida, dict) or blank(percebida.get("descricao")):
            problems.append({"path": "$.percebida.descricao", "message": "percebida.descricao is required"})
        if not isinstance(percebida, dict) or blank(percebida.get("sinal")):
            problems.append({"path": "$.percebida.sinal", "message": "percebida.sinal is required"})
        if problems:
            raise domain_error("DOMAIN_RULE_VIOLATION", "The consequence lacks required fields.", details=problems)
        assert isinstance(observada, dict) and isinstance(percebida, dict)
        evidencias = [e for e in as_list(body.get("evidencias_minimas")) or [] if isinstance(e, str)]
        given = {normalise(e) for e in evidencias}
        missing = [req for req in contract.observacao_minima_requerida if normalise(req) not in given]
        if missing:
            raise domain_error("EVIDENCE_MISSING", "evidencias_minimas lacks observations the contract requires.",
                               details={"missing": missing, "required": contract.observacao_minima_requerida})
        anterior = body.get("observacao_anterior_id")
        if anterior is not None:
            earlier = self.state.consequencias.get(anterior) if isinstance(anterior, str) else None
            if earlier is None or earlier.contrato_id != contract.id:
                raise domain_error("INVALID_FOLLOW_UP", "observacao_anterior_id must name an earlier observation "
                                   "of the same contract.", details={"observacao_anterior_id": anterior})

        at = format_iso(now)
        batch = Batch(actor, request_id)
        obs_id = new_id("obs")
        agent_id = body.get("agentId") if isinstance(body.get("agentId"), str) else None
        raw_triggers = body.get("autonomyTriggers") if isinstance(body.get("autonomyTriggers"), dict) else None
        autonomy: dict[str, Any] = {"action": ConsequenceAction.NONE, "rule": "SEM_GATILHOS"}
        consequence_events = Batch(actor, request_id)
        if raw_triggers is not None and agent_id is not None:
            autonomy = self._apply_consequence_policy(consequence_events, obs_id, agent_id, raw_triggers, at)
        consequence = Consequence(
            id=obs_id, contrato_id=contract.id, episodio_id=episode.id, observada=dict(observada),
            percebida=dict(percebida), evidencias_minimas=evidencias, observacao_anterior_id=anterior,
            agent_id=agent_id, autonomy_triggers=raw_triggers, autonomy=autonomy, registrada_em=at,
            registrada_por=actor)
        batch.add(EventType.CONSEQUENCIA_REGISTRADA, Entity.CONSEQUENCE, obs_id,
                  {"episodio_id": episode.id, "observacao": consequence})
        batch.drafts.extend(consequence_events.drafts)
        return Outcome(batch.drafts, lambda state: {"observacao": state.consequencias[obs_id].to_api(),
                                                    "autonomy": autonomy})

    def _apply_consequence_policy(self, batch: Batch, obs_id: str, agent_id: str, raw: dict[str, Any],
                                  at: str) -> dict[str, Any]:
        triggers = AutonomyTriggers(
            severidade=raw.get("severidade"), categoria=raw.get("categoria"),
            violou_limites=raw.get("violou_limites") is True, reversivel=raw.get("reversivel"),
            perda_relevante=raw.get("perda_relevante") is True)
        mandate = self.latest_mandate(agent_id)
        decision = self.policies.consequence.decide(triggers, mandate)
        report: dict[str, Any] = {"action": decision.action, "rule": decision.rule, "reason": decision.reason}
        if decision.action == ConsequenceAction.NONE:
            return report
        if mandate is None:
            report["applied"] = False
            report["detail"] = f"agent {agent_id} has no mandate"
            return report
        report["mandateId"] = mandate.id
        changes_mandate = decision.action in (ConsequenceAction.REVOKE, ConsequenceAction.SUSPEND,
                                              ConsequenceAction.DEGRADE)
        if changes_mandate and mandate.status != MandateStatus.ACTIVE:
            # Idempotent: a mandate already out of service is left as it is.
            report["alreadyApplied"] = True
            report["mandateStatus"] = mandate.status
            return report
        motivo = f"{decision.rule}: {decision.reason}"
        if decision.action == ConsequenceAction.REVOKE:
            batch.add(EventType.AUTONOMY_REVOKED_BY_CONSEQUENCE, Entity.MANDATE, mandate.id,
                      {"mandate_id": mandate.id, "consequencia_id": obs_id, "regra": decision.rule,
                       "motivo": motivo, "em": at}, actor=SYSTEM_ACTOR)
        elif decision.action == ConsequenceAction.SUSPEND:
            batch.add(EventType.AUTONOMY_SUSPENDED, Entity.MANDATE, mandate.id,
                      {"mandate_id": mandate.id, "consequencia_id": obs_id, "regra": decision.rule,
                       "motivo": motivo, "em": at}, actor=SYSTEM_ACTOR)
            report["reviewCaseId"] = self._open_review(batch, obs_id, mandate, motivo, decision.rule, at,
                                                       SYSTEM_ACTOR)
        elif decision.action == ConsequenceAction.DEGRADE:
            lower = mandate.modo.degraded()
            if lower is None:
                report["alreadyApplied"] = True
                report["detail"] = "the mandate is already in ENSINO"
                return report
            batch.add(EventType.AUTONOMY_DEGRADED, Entity.MANDATE, mandate.id,
                      {"mandate_id": mandate.id, "consequencia_id": obs_id, "de": mandate.modo, "para": lower,
                       "regra": decision.rule, "motivo": motivo, "em": at}, actor=SYSTEM_ACTOR)
        elif decision.action == ConsequenceAction.REVIEW:
            report["reviewCaseId"] = self._open_review(batch, obs_id, mandate, motivo, decision.rule, at,
                                                       SYSTEM_ACTOR)
        return report
