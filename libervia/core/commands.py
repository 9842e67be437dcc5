"""The Core's commands: each validates its input against the current state and returns the events to append.

A command never touches the state. It returns an :class:`Outcome`: the drafts of every event it produces (the
Core appends them in one atomic, durable append and folds the stored entries into the projection), a function
that builds the response from the new state, and optionally the error to raise once those events are durable
(a protocol rejection or a closed-layer block is recorded before it is reported). A command whose input is
invalid raises before producing anything, so it writes nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from libervia.clock import format_iso, parse_iso
from libervia.core.model import (
    EPISODE_TRANSITIONS,
    MINIMUM_OBSERVATIONS,
    SITUATION_TRANSITIONS,
    SYSTEM_ACTOR,
    AutonomyMode,
    Consequence,
    ConsequenceAction,
    Contract,
    Decision,
    DecisionProtocol,
    Entity,
    Episode,
    EpisodeState,
    EventType,
    Mandate,
    MandateStatus,
    ProtocolState,
    Resolution,
    ReviewCase,
    ReviewEffect,
    ReviewStatus,
    RiskProfile,
    Situation,
    SituationStatus,
    new_id,
)
from libervia.core.policy import (
    AutonomyRequest,
    AutonomyTriggers,
    ProtocolInput,
    SituationInput,
    TenantPolicies,
    run_closed_layer,
)
from libervia.core.projection import CoreState
from libervia.errors import ApiError, domain_error, invalid_state, not_found, validation_error
from libervia.storage import EventDraft

Respond = Callable[[CoreState], dict[str, Any]]
E = TypeVar("E", bound=enum.Enum)
CommandMethod = Callable[..., "Outcome"]

# Every command, by name: the one list that ``TenantCore`` runs commands from (``core.decide(...)``) and that
# routes name commands by (``Commands.decide``). A command is a method of :class:`Commands` marked ``@command``,
# taking its inputs and then ``actor``, ``request_id`` and ``now`` by keyword.
COMMANDS: dict[str, CommandMethod] = {}


def command(method: CommandMethod) -> CommandMethod:
    COMMANDS[method.__name__] = method
    return method


@dataclass(slots=True)
class Outcome:
    drafts: list[EventDraft]
    respond: Respond
    error: ApiError | None = None   # raised after the drafts are durable: a rejection that is itself recorded


@dataclass(slots=True)
class _Batch:
    """Collects a command's drafts, stamping each with the acting key and the request id."""

    actor: str | None
    request_id: str | None
    drafts: list[EventDraft] = field(default_factory=list)

    def add(self, evento: EventType, entidade: Entity, entidade_id: str, payload: dict[str, Any],
            *, actor: str | None = None) -> None:
        self.drafts.append(EventDraft(evento=evento.value, entidade=entidade.value, entidade_id=entidade_id,
                                      payload=payload, actor=actor or self.actor, request_id=self.request_id))


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _normalise(text: str) -> str:
    """Evidence labels are compared the way a person reads them: case, accents' encoding and spacing aside."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


class Commands:
    """The command handlers of one tenant's Core, reading ``state`` and the tenant's ``policies``."""

    def __init__(self, tenant_id: str, state: CoreState, policies: TenantPolicies) -> None:
        self.tenant_id = tenant_id
        self.state = state
        self.policies = policies

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
        batch = _Batch(actor, request_id)
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
            criterios_minimos=_list(protocol_raw.get("criterios_minimos")) or [],
            riscos_considerados=_list(protocol_raw.get("riscos_considerados")) or [],
            limites_definidos=_list(protocol_raw.get("limites_definidos")) or [],
            perfil_risco=_enum_or_none(RiskProfile, protocol_raw.get("perfil_risco")),
            alternativas_avaliadas=[a for a in _list(protocol_raw.get("alternativas_avaliadas")) or []
                                    if isinstance(a, str)],
            alternativa_escolhida=protocol_raw.get("alternativa_escolhida")
            if isinstance(protocol_raw.get("alternativa_escolhida"), str) else None,
            memoria_consultada_ids=[m for m in _list(protocol_raw.get("memoria_consultada_ids")) or []
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
                    for name in ("dominio", "contexto", "objetivo") if _blank(raw.get(name))]
        for name in ("incertezas", "alternativas", "riscos"):
            if _list(raw.get(name)) is None:
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
            if not _list(raw.get(name)):
                problem(code, name, f"{name} must list at least one item")
        if _enum_or_none(RiskProfile, raw.get("perfil_risco")) is None:
            problem("PERFIL_RISCO_AUSENTE", "perfil_risco", "perfil_risco is missing")
        avaliadas = [a for a in _list(raw.get("alternativas_avaliadas")) or [] if isinstance(a, str)]
        if len(avaliadas) < 2:
            problem("ALTERNATIVAS_INSUFICIENTES", "alternativas_avaliadas",
                    "at least two alternatives must be evaluated")
        escolhida = raw.get("alternativa_escolhida")
        if _blank(escolhida):
            problem("ALTERNATIVA_ESCOLHIDA_AUSENTE", "alternativa_escolhida", "alternativa_escolhida is missing")
        elif escolhida not in avaliadas:
            problem("ALTERNATIVA_ESCOLHIDA_NAO_AVALIADA", "alternativa_escolhida",
                    "alternativa_escolhida is not among alternativas_avaliadas")
        for memory_id in _list(raw.get("memoria_consultada_ids")) or []:
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

    def _abandon(self, batch: _Batch, sit_id: str, epi_id: str, at: str) -> None:
        """No decision can be made: nothing is left stranded half-way."""
        self._situation_status_event(batch, sit_id, epi_id, SituationStatus.EM_ANALISE, SituationStatus.REJEITADA, at)
        self._episode_state_event(batch, epi_id, EpisodeState.CRIADO, EpisodeState.ENCERRADO, at)

    @staticmethod
    def _situation_status_event(batch: _Batch, sit_id: str, epi_id: str | None, old: SituationStatus,
                         new: SituationStatus, at: str) -> None:
        _check_transition(SITUATION_TRANSITIONS, old, new, f"Situation {sit_id}")
        batch.add(EventType.SITUACAO_STATUS_ALTERADO, Entity.SITUATION, sit_id,
                  {"situacao_id": sit_id, "episodio_id": epi_id, "de": old, "para": new, "em": at})

    @staticmethod
    def _episode_state_event(batch: _Batch, epi_id: str, old: EpisodeState, new: EpisodeState, at: str) -> None:
        _check_transition(EPISODE_TRANSITIONS, old, new, f"Episode {epi_id}")
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
        batch = _Batch(actor, request_id)
        self._episode_state_event(batch, episodio_id, old, new, at)
        self._situation_status_event(batch, situation.id, episodio_id, situation.status, situation_new, at)
        return Outcome(batch.drafts, lambda state: state.episodios[episodio_id].to_api())

    def episode(self, episodio_id: str) -> Episode:
        episode = self.state.episodios.get(episodio_id)
        if episode is None:
            raise not_found("EPISODE_NOT_FOUND", f"Episode {episodio_id} does not exist.")
        return episode

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
        if not isinstance(observada, dict) or _blank(observada.get("descricao")):
            problems.append({"path": "$.observada.descricao", "message": "observada.descricao is required"})
        if not isinstance(percebida, dict) or _blank(percebida.get("descricao")):
            problems.append({"path": "$.percebida.descricao", "message": "percebida.descricao is required"})
        if not isinstance(percebida, dict) or _blank(percebida.get("sinal")):
            problems.append({"path": "$.percebida.sinal", "message": "percebida.sinal is required"})
        if problems:
            raise domain_error("DOMAIN_RULE_VIOLATION", "The consequence lacks required fields.", details=problems)
        assert isinstance(observada, dict) and isinstance(percebida, dict)
        evidencias = [e for e in _list(body.get("evidencias_minimas")) or [] if isinstance(e, str)]
        given = {_normalise(e) for e in evidencias}
        missing = [req for req in contract.observacao_minima_requerida if _normalise(req) not in given]
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
        batch = _Batch(actor, request_id)
        obs_id = new_id("obs")
        agent_id = body.get("agentId") if isinstance(body.get("agentId"), str) else None
        raw_triggers = body.get("autonomyTriggers") if isinstance(body.get("autonomyTriggers"), dict) else None
        autonomy: dict[str, Any] = {"action": ConsequenceAction.NONE, "rule": "SEM_GATILHOS"}
        consequence_events = _Batch(actor, request_id)
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

    def _apply_consequence_policy(self, batch: _Batch, obs_id: str, agent_id: str, raw: dict[str, Any],
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

    def _open_review(self, batch: _Batch, obs_id: str, mandate: Mandate | None, motivo: str, regra: str | None,
                     at: str, actor: str | None) -> str:
        rev_id = new_id("rev")
        review = ReviewCase(id=rev_id, consequencia_id=obs_id, mandate_id=mandate.id if mandate else None,
                            agent_id=mandate.agent_id if mandate else None, motivo=motivo, regra=regra,
                            status=ReviewStatus.OPEN, opened_at=at, opened_by=actor)
        if mandate is not None:
            batch.add(EventType.AUTONOMY_HUMAN_REVIEW_FLAGGED, Entity.MANDATE, mandate.id,
                      {"mandate_id": mandate.id, "consequencia_id": obs_id, "review_id": rev_id, "em": at},
                      actor=actor)
        batch.add(EventType.HUMAN_REVIEW_CASE_OPENED, Entity.REVIEW, rev_id, {"review": review}, actor=actor)
        return rev_id

    # --- autonomy ------------------------------------------------------------------------------------------------

    def latest_mandate(self, agent_id: str) -> Mandate | None:
        """The agent's most recent mandate of any status (so a suspended agent is reported as suspended)."""
        ids = self.state.agent_mandates.get(agent_id)
        return self.state.mandates[ids[-1]] if ids else None

    def mandate(self, mandate_id: str) -> Mandate:
        mandate = self.state.mandates.get(mandate_id)
        if mandate is None:
            raise not_found("MANDATE_NOT_FOUND", f"Mandate {mandate_id} does not exist.")
        return mandate

    @command
    def evaluate_autonomy(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                          now: datetime) -> Outcome:
        modo = _enum_or_none(AutonomyMode, body.get("modo"))
        perfil = _enum_or_none(RiskProfile, body.get("perfil_risco"))
        problems = [{"path": f"$.{name}", "message": f"{name} is required and must be one of the allowed values"}
                    for name, value in (("modo", modo), ("perfil_risco", perfil)) if value is None]
        problems += [{"path": f"$.{name}", "message": f"{name} must be a non-blank string"}
                     for name in ("agentId", "politica") if _blank(body.get(name))]
        if problems:
            raise validation_error(problems)
        assert modo is not None and perfil is not None
        agent_id = body["agentId"]
        mandate_id = body.get("mandateId")
        if mandate_id is not None:
            named = self.state.mandates.get(mandate_id) if isinstance(mandate_id, str) else None
            if named is None or named.agent_id != agent_id:
                raise not_found("MANDATE_NOT_FOUND", f"Agent {agent_id} has no mandate {mandate_id}.")
            mandates = [named]
        else:
            mandates = [self.state.mandates[m] for m in self.state.agent_mandates.get(agent_id, [])]
        blocked = False
        if body.get("episodio_id") is not None:
            blocked = self.episode(str(body["episodio_id"])).bloqueio is not None
        caso_uso = body.get("caso_uso")
        request = AutonomyRequest(
            agent_id=agent_id, modo=modo, politica=body["politica"], perfil_risco=perfil,
            dominio=body.get("dominio") if isinstance(body.get("dominio"), str) else None,
            caso_uso=caso_uso if isinstance(caso_uso, int) and not isinstance(caso_uso, bool) else None,
            contexto=body.get("contexto") if isinstance(body.get("contexto"), str) else None,
            mandate_id=mandate_id, closed_layer_blocked=blocked)
        decision = self.policies.autonomy.evaluate(request, mandates, now)

        at = format_iso(now)
        batch = _Batch(actor, request_id)
        evaluated = self.state.mandates.get(decision.mandate_id or "")
        entity_id = evaluated.id if evaluated else agent_id
        if decision.expire and evaluated is not None and evaluated.status == MandateStatus.ACTIVE:
            batch.add(EventType.AUTONOMY_EXPIRED, Entity.MANDATE, evaluated.id,
                      {"mandate_id": evaluated.id, "motivo": decision.regra, "em": at}, actor=SYSTEM_ACTOR)
        check = {"mandate_id": evaluated.id if evaluated else None, "agentId": agent_id, "modo": modo,
                 "politica": request.politica, "perfil_risco": perfil, "dominio": request.dominio,
                 "caso_uso": request.caso_uso, "permitido": decision.permitido, "regra": decision.regra,
                 "motivo": decision.motivo, "requer_revisao_humana": decision.requer_revisao_humana, "em": at}
        batch.add(EventType.AUTONOMY_CHECK_PASSED if decision.permitido else EventType.AUTONOMY_CHECK_FAILED,
                  Entity.MANDATE, entity_id, check)
        result: dict[str, Any] = {"permitido": decision.permitido, "regra": decision.regra,
                                  "motivo": decision.motivo, "requer_revisao_humana": decision.requer_revisao_humana}
        if evaluated is not None:
            result["mandateId"] = evaluated.id
        if decision.permitido and body.get("consumir") is True and evaluated is not None:
            uses = evaluated.uses + 1
            batch.add(EventType.AUTONOMY_USE_CONSUMED, Entity.MANDATE, evaluated.id,
                      {"mandate_id": evaluated.id, "uses": uses, "em": at})
            result["uses"] = uses
            if evaluated.max_uses is not None and uses >= evaluated.max_uses:
                batch.add(EventType.AUTONOMY_EXPIRED, Entity.MANDATE, evaluated.id,
                          {"mandate_id": evaluated.id, "motivo": "MANDATE_EXHAUSTED_USES", "em": at},
                          actor=SYSTEM_ACTOR)
                result["mandateExpired"] = True
        return Outcome(batch.drafts, lambda _state: result)

    # --- mandates ------------------------------------------------------------------------------------------------

    @command
    def grant_mandate(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                      now: datetime) -> Outcome:
        modo = _enum_or_none(AutonomyMode, body.get("modo"))
        perfil = _enum_or_none(RiskProfile, body.get("perfil_risco_maximo"))
        politicas = [p for p in _list(body.get("politicas_permitidas")) or [] if not _blank(p)]
        problems = []
        if _blank(body.get("agentId")):
            problems.append({"path": "$.agentId", "message": "agentId is required"})
        if modo is None:
            problems.append({"path": "$.modo", "message": "modo must be ENSINO, VIVENCIA_ASSISTIDA or "
                                                          "VIVENCIA_AUTONOMA"})
        if perfil is None:
            problems.append({"path": "$.perfil_risco_maximo", "message": "perfil_risco_maximo is required"})
        if not politicas:
            problems.append({"path": "$.politicas_permitidas", "message": "at least one allowed policy"})
        window = {}
        for name in ("validFrom", "validUntil"):
            value = body.get(name)
            if value is None:
                continue
            try:
                window[name] = parse_iso(value)
            except (TypeError, ValueError, AttributeError):
                problems.append({"path": f"$.{name}", "message": "must be an RFC 3339 timestamp"})
        if len(window) == 2 and window["validUntil"] <= window["validFrom"]:
            problems.append({"path": "$.validUntil", "message": "validUntil must be after validFrom"})
        max_uses = body.get("maxUses")
        if max_uses is not None and (isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1):
            problems.append({"path": "$.maxUses", "message": "maxUses must be a positive integer"})
        if problems:
            raise domain_error("DOMAIN_RULE_VIOLATION", "The mandate is not valid.", details=problems)
        assert modo is not None and perfil is not None
        at = format_iso(now)
        mdt_id = new_id("mdt")
        mandate = Mandate(
            id=mdt_id, agent_id=body["agentId"], modo=modo, politicas_permitidas=politicas,
            perfil_risco_maximo=perfil, limites=_list(body.get("limites")) or [],
            requer_humano_se=[t for t in _list(body.get("requer_humano_se")) or [] if isinstance(t, str)],
            dominios_permitidos=[d for d in _list(body.get("dominios_permitidos")) or [] if isinstance(d, str)],
            casos_uso_permitidos=[c for c in _list(body.get("casos_uso_permitidos")) or []
                                  if isinstance(c, int) and not isinstance(c, bool)],
            valid_from=format_iso(window["validFrom"]) if "validFrom" in window else None,
            valid_until=format_iso(window["validUntil"]) if "validUntil" in window else None,
            max_uses=max_uses, granted_at=at, granted_by=actor, updated_at=at)
        batch = _Batch(actor, request_id)
        batch.add(EventType.AUTONOMY_GRANTED, Entity.MANDATE, mdt_id, {"mandate_id": mdt_id, "mandate": mandate})
        return Outcome(batch.drafts, lambda state: state.mandates[mdt_id].to_api())

    @command
    def revoke_mandate(self, mandate_id: str, motivo: str | None, *, actor: str | None, request_id: str | None,
                       now: datetime) -> Outcome:
        return self._mandate_transition(_MandateOps.revoke, mandate_id, motivo, actor, request_id, now)

    @command
    def suspend_mandate(self, mandate_id: str, motivo: str | None, *, actor: str | None,
                        request_id: str | None, now: datetime) -> Outcome:
        return self._mandate_transition(_MandateOps.suspend, mandate_id, motivo, actor, request_id, now)

    @command
    def resume_mandate(self, mandate_id: str, motivo: str | None, *, actor: str | None, request_id: str | None,
                       now: datetime) -> Outcome:
        return self._mandate_transition(_MandateOps.resume, mandate_id, motivo, actor, request_id, now)

    def _mandate_transition(self, transition: Callable[[_MandateOps, Mandate, str | None], ApiError | None],
                            mandate_id: str, motivo: str | None, actor: str | None, request_id: str | None,
                            now: datetime) -> Outcome:
        batch = _Batch(actor, request_id)
        error = transition(_MandateOps(batch, format_iso(now)), self.mandate(mandate_id), motivo)
        if error:
            raise error
        return Outcome(batch.drafts, lambda state: state.mandates[mandate_id].to_api())

    # --- review cases --------------------------------------------------------------------------------------------

    def review(self, review_id: str) -> ReviewCase:
        review = self.state.reviews.get(review_id)
        if review is None:
            raise not_found("REVIEW_NOT_FOUND", f"Review case {review_id} does not exist.")
        return review

    @command
    def open_review(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                    now: datetime) -> Outcome:
        obs_id = body.get("consequencia_id")
        consequence = self.state.consequencias.get(obs_id) if isinstance(obs_id, str) else None
        if consequence is None:
            raise not_found("CONSEQUENCE_NOT_FOUND", f"Consequence {obs_id} does not exist.")
        if _blank(body.get("motivo")):
            raise domain_error("DOMAIN_RULE_VIOLATION", "A review case needs a motivo.",
                               details=[{"path": "$.motivo", "message": "required"}])
        open_id = self.state.open_review_by_consequence.get(consequence.id)
        if open_id is not None:
            raise ApiError(409, "REVIEW_ALREADY_OPEN", f"Consequence {consequence.id} already has an open review "
                           f"case ({open_id}).", details={"reviewCaseId": open_id})
        mandate = None
        if body.get("mandateId") is not None:
            mandate = self.mandate(str(body["mandateId"]))
        elif consequence.autonomy.get("mandateId"):
            mandate = self.state.mandates.get(consequence.autonomy["mandateId"])
        elif consequence.agent_id:
            mandate = self.latest_mandate(consequence.agent_id)
        batch = _Batch(actor, request_id)
        rev_id = self._open_review(batch, consequence.id, mandate, body["motivo"], None, format_iso(now), actor)
        return Outcome(batch.drafts, lambda state: state.reviews[rev_id].to_api())

    @command
    def resolve_review(self, review_id: str, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                       now: datetime) -> Outcome:
        review = self.review(review_id)
        resolution = _enum_or_none(Resolution, body.get("resolution"))
        if resolution is None:
            raise validation_error([{"path": "$.resolution", "message": "resolution is required"}])
        notes = body.get("notes")
        if resolution != Resolution.NO_ACTION and _blank(notes):
            raise domain_error("NOTES_REQUIRED", "Resolving a review case needs notes unless the resolution is "
                               "NO_ACTION.")
        effects = []
        for raw in _list(body.get("effects")) or []:
            effect = _enum_or_none(ReviewEffect, raw)
            if effect is None:
                raise validation_error([{"path": "$.effects", "message": f"unknown effect {raw!r}"}])
            effects.append(effect)
        if review.status != ReviewStatus.OPEN:
            raise invalid_state(f"Review case {review_id} is {review.status}; only an OPEN case can be resolved.")
        at = format_iso(now)
        resolved = _Batch(actor, request_id)
        effect_events = _Batch(actor, request_id)
        ops = _MandateOps(effect_events, at)
        mandate = self.state.mandates.get(review.mandate_id or "")
        reports = []
        for effect in effects:
            if mandate is None:
                reports.append({"effect": effect, "ok": False, "error": "NO_MANDATE",
                                "message": "this review case concerns no mandate"})
                continue
            mandate, error = ops.apply_effect(effect, mandate, notes if isinstance(notes, str) else None)
            report: dict[str, Any] = {"effect": effect, "ok": error is None, "mandateId": mandate.id}
            if error is not None:
                report.update(error=error.code, message=error.message)
            reports.append(report)
        resolved.add(EventType.HUMAN_REVIEW_CASE_RESOLVED, Entity.REVIEW, review_id,
                     {"review_id": review_id, "resolution": resolution, "notes": notes, "effects": reports,
                      "em": at})
        return Outcome(resolved.drafts + effect_events.drafts,
                       lambda state: {**state.reviews[review_id].to_api(), "effects": reports})

    @command
    def dismiss_review(self, review_id: str, notes: str | None, *, actor: str | None, request_id: str | None,
                       now: datetime) -> Outcome:
        review = self.review(review_id)
        if _blank(notes):
            raise domain_error("NOTES_REQUIRED", "Dismissing a review case needs notes.")
        if review.status != ReviewStatus.OPEN:
            raise invalid_state(f"Review case {review_id} is {review.status}; only an OPEN case can be dismissed.")
        batch = _Batch(actor, request_id)
        batch.add(EventType.HUMAN_REVIEW_CASE_DISMISSED, Entity.REVIEW, review_id,
                  {"review_id": review_id, "notes": notes, "em": format_iso(now)})
        return Outcome(batch.drafts, lambda state: state.reviews[review_id].to_api())

    @command
    def update_review_notes(self, review_id: str, notes: str | None, *, actor: str | None,
                            request_id: str | None, now: datetime) -> Outcome:
        self.review(review_id)
        if _blank(notes):
            raise domain_error("NOTES_REQUIRED", "Notes cannot be blank.")
        batch = _Batch(actor, request_id)
        batch.add(EventType.HUMAN_REVIEW_CASE_NOTES_UPDATED, Entity.REVIEW, review_id,
                  {"review_id": review_id, "notes": notes, "em": format_iso(now)})
        return Outcome(batch.drafts, lambda state: state.reviews[review_id].to_api())


class _MandateOps:
    """The guarded mandate transitions shared by the mandate routes and review-case effects.

    Each returns the error that refuses it, or None after adding its event. ``apply_effect`` works on a copy of
    the mandate so several effects of one resolution see each other's result before anything is appended.
    """

    def __init__(self, batch: _Batch, at: str) -> None:
        self.batch = batch
        self.at = at

    def _event(self, evento: EventType, mandate: Mandate, **payload: Any) -> None:
        self.batch.add(evento, Entity.MANDATE, mandate.id, {"mandate_id": mandate.id, **payload, "em": self.at})

    def revoke(self, mandate: Mandate, motivo: str | None) -> ApiError | None:
        if mandate.status not in (MandateStatus.ACTIVE, MandateStatus.SUSPENDED):
            return invalid_state(f"Mandate {mandate.id} is {mandate.status} and cannot be revoked.")
        self._event(EventType.AUTONOMY_REVOKED, mandate, motivo=motivo)
        return None

    def suspend(self, mandate: Mandate, motivo: str | None) -> ApiError | None:
        if mandate.status != MandateStatus.ACTIVE:
            return invalid_state(f"Mandate {mandate.id} is {mandate.status}; only an active mandate can be "
                                 "suspended.")
        self._event(EventType.AUTONOMY_SUSPENDED, mandate, motivo=motivo, consequencia_id=None)
        return None

    def resume(self, mandate: Mandate, motivo: str | None) -> ApiError | None:
        if self.batch.actor in (None, SYSTEM_ACTOR):
            return ApiError(403, "HUMAN_ACTOR_REQUIRED", "Only a human operator can resume a mandate.")
        if mandate.status != MandateStatus.SUSPENDED:
            return invalid_state(f"Mandate {mandate.id} is {mandate.status}; only a suspended mandate can be "
                                 "resumed.")
        if mandate.suspended_by_consequence and _blank(motivo):
            return domain_error("REASON_REQUIRED", f"Mandate {mandate.id} was suspended by consequence "
                                f"{mandate.suspended_by_consequence}; resuming it needs a reason.")
        self._event(EventType.AUTONOMY_RESUMED, mandate, motivo=motivo,
                    consequencia_id=mandate.suspended_by_consequence)
        return None

    def apply_effect(self, effect: ReviewEffect, mandate: Mandate,
                     notes: str | None) -> tuple[Mandate, ApiError | None]:
        if effect == ReviewEffect.RESUME_MANDATE:
            error = self.resume(mandate, notes)
            after = dataclasses.replace(mandate, status=MandateStatus.ACTIVE, suspended_by_consequence=None)
        elif effect == ReviewEffect.REVOKE_MANDATE:
            error = self.revoke(mandate, notes)
            after = dataclasses.replace(mandate, status=MandateStatus.REVOKED)
        elif effect == ReviewEffect.KEEP_SUSPENDED:
            error = None if mandate.status == MandateStatus.SUSPENDED else invalid_state(
                f"Mandate {mandate.id} is {mandate.status}, not suspended.")
            after = mandate
        else:
            lower = mandate.modo.degraded()
            if mandate.status not in (MandateStatus.ACTIVE, MandateStatus.SUSPENDED):
                error = invalid_state(f"Mandate {mandate.id} is {mandate.status} and cannot be degraded.")
            elif lower is None:
                error = invalid_state(f"Mandate {mandate.id} is already in ENSINO.")
            else:
                error = None
                self._event(EventType.AUTONOMY_DEGRADED, mandate, de=mandate.modo, para=lower, motivo=notes)
            after = dataclasses.replace(mandate, modo=lower or mandate.modo)
        return (mandate, error) if error else (after, None)


def _check_transition(table: Mapping[E, frozenset[E]], old: E, new: E, what: str) -> None:
    """Every state change a command records goes through its model's transition table."""
    if new not in table[old]:
        raise invalid_state(f"{what} is {old}; it cannot move to {new}.", details={"estado": old, "para": new})


def _enum_or_none(kind: type[E], value: Any) -> E | None:
    try:
        return kind(value)
    except (ValueError, TypeError):
        return None
