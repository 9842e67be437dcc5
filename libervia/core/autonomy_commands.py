"""The autonomy commands: evaluating an agent's autonomy, mandates, and human review cases (DOMAIN.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from libervia.clock import format_iso, parse_iso
from libervia.core.command_kit import (
    Batch,
    CommandBase,
    Outcome,
    as_list,
    blank,
    command,
    enum_or_none,
)
from libervia.core.model import (
    SYSTEM_ACTOR,
    AutonomyMode,
    Entity,
    EventType,
    Mandate,
    MandateStatus,
    Resolution,
    ReviewEffect,
    ReviewStatus,
    RiskProfile,
    new_id,
)
from libervia.core.policy import (
    AutonomyRequest,
)
from libervia.errors import ApiError, domain_error, invalid_state, not_found, validation_error


class AutonomyCommands(CommandBase):
    # --- autonomy ------------------------------------------------------------------------------------------------

    @command
    def evaluate_autonomy(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                          now: datetime) -> Outcome:
        modo = enum_or_none(AutonomyMode, body.get("modo"))
        perfil = enum_or_none(RiskProfile, body.get("perfil_risco"))
        problems = [{"path": f"$.{name}", "message": f"{name} is required and must be one of the allowed values"}
                    for name, value in (("modo", modo), ("perfil_risco", perfil)) if value is None]
        problems += [{"path": f"$.{name}", "message": f"{name} must be a non-blank string"}
                     for name in ("agentId", "politica") if blank(body.get(name))]
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
        batch = Batch(actor, request_id)
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
        modo = enum_or_none(AutonomyMode, body.get("modo"))
        perfil = enum_or_none(RiskProfile, body.get("perfil_risco_maximo"))
        politicas = [p for p in as_list(body.get("politicas_permitidas")) or [] if not blank(p)]
        problems = []
        if blank(body.get("agentId")):
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
            perfil_risco_maximo=perfil, limites=as_list(body.get("limites")) or [],
            requer_humano_se=[t for t in as_list(body.get("requer_humano_se")) or [] if isinstance(t, str)],
            dominios_permitidos=[d for d in as_list(body.get("dominios_permitidos")) or [] if isinstance(d, str)],
            casos_uso_permitidos=[c for c in as_list(body.get("casos_uso_permitidos")) or []
                                  if isinstance(c, int) and not isinstance(c, bool)],
            valid_from=format_iso(window["validFrom"]) if "validFrom" in window else None,
            valid_until=format_iso(window["validUntil"]) if "validUntil" in window else None,
            max_uses=max_uses, granted_at=at, granted_by=actor, updated_at=at)
        batch = Batch(actor, request_id)
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
        batch = Batch(actor, request_id)
        error = transition(_MandateOps(batch, format_iso(now)), self.mandate(mandate_id), motivo)
        if error:
            raise error
        return Outcome(batch.drafts, lambda state: state.mandates[mandate_id].to_api())

    # --- review cases --------------------------------------------------------------------------------------------

    # --- review cases --------------------------------------------------------------------------------------------

    @command
    def open_review(self, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                    now: datetime) -> Outcome:
        obs_id = body.get("consequencia_id")
        consequence = self.state.consequencias.get(obs_id) if isinstance(obs_id, str) else None
        if consequence is None:
            raise not_found("CONSEQUENCE_NOT_FOUND", f"Consequence {obs_id} does not exist.")
        if blank(body.get("motivo")):
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
        batch = Batch(actor, request_id)
        rev_id = self._open_review(batch, consequence.id, mandate, body["motivo"], None, format_iso(now), actor)
        return Outcome(batch.drafts, lambda state: state.reviews[rev_id].to_api())

    @command
    def resolve_review(self, review_id: str, body: dict[str, Any], *, actor: str | None, request_id: str | None,
                       now: datetime) -> Outcome:
        review = self.review(review_id)
        resolution = enum_or_none(Resolution, body.get("resolution"))
        if resolution is None:
            raise validation_error([{"path": "$.resolution", "message": "resolution is required"}])
        notes = body.get("notes")
        if resolution != Resolution.NO_ACTION and blank(notes):
            raise domain_error("NOTES_REQUIRED", "Resolving a review case needs notes unless the resolution is "
                               "NO_ACTION.")
        effects = []
        for raw in as_list(body.get("effects")) or []:
            effect = enum_or_none(ReviewEffect, raw)
            if effect is None:
                raise validation_error([{"path": "$.effects", "message": f"unknown effect {raw!r}"}])
            effects.append(effect)
        if review.status != ReviewStatus.OPEN:
            raise invalid_state(f"Review case {review_id} is {review.status}; only an OPEN case can be resolved.")
        at = format_iso(now)
        resolved = Batch(actor, request_id)
        effect_events = Batch(actor, request_id)
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
        if blank(notes):
            raise domain_error("NOTES_REQUIRED", "Dismissing a review case needs notes.")
        if review.status != ReviewStatus.OPEN:
            raise invalid_state(f"Review case {review_id} is {review.status}; only an OPEN case can be dismissed.")
        batch = Batch(actor, request_id)
        batch.add(EventType.HUMAN_REVIEW_CASE_DISMISSED, Entity.REVIEW, review_id,
                  {"review_id": review_id, "notes": notes, "em": format_iso(now)})
        return Outcome(batch.drafts, lambda state: state.reviews[review_id].to_api())

    @command
    def update_review_notes(self, review_id: str, notes: str | None, *, actor: str | None,
                            request_id: str | None, now: datetime) -> Outcome:
        self.review(review_id)
        if blank(notes):
            raise domain_error("NOTES_REQUIRED", "Notes cannot be blank.")
        batch = Batch(actor, request_id)
        batch.add(EventType.HUMAN_REVIEW_CASE_NOTES_UPDATED, Entity.REVIEW, review_id,
                  {"review_id": review_id, "notes": notes, "em": format_iso(now)})
        return Outcome(batch.drafts, lambda state: state.reviews[review_id].to_api())


class _MandateOps:
    """The guarded mandate transitions shared by the mandate routes and review-case effects.

    Each returns the error that refuses it, or None after adding its event. ``apply_effect`` works on a copy of
    the mandate so several effects of one resolution see each other's result before anything is appended.
    """

    def __init__(self, batch: Batch, at: str) -> None:
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
        if mandate.suspended_by_consequence and blank(motivo):
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
