"""The built-in tenant policies of DOMAIN.md: the five closed-layer rules, the autonomy evaluation and the
consequence policy.

Settings (``[default.plugin.policy_default]``, schema ``schemas/plugins/policy_default.schema.json``)::

    disabled_rules = ["BLOQUEAR_SEM_LIMITES"]                 # for every tenant
    tenants.acme.disabled_rules = ["BLOQUEAR_SEM_CONSEQUENCIA"]  # for tenant "acme" only

Another plugin adds rules by returning its own list from ``libervia_closed_layer_rules``, replaces the set with a
``RuleSet(replace=True)``, or replaces a policy by returning it from ``libervia_autonomy_policy`` /
``libervia_consequence_policy`` (plugins registered later are asked first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from libervia import hookimpl
from libervia.clock import parse_iso
from libervia.core.model import (
    AutonomyMode,
    ConsequenceAction,
    ConsequenceCategory,
    Mandate,
    MandateStatus,
    RiskProfile,
    Severity,
)
from libervia.core.policy import (
    AutonomyDecision,
    AutonomyRequest,
    AutonomyTriggers,
    ClosedLayerRule,
    ConsequenceDecision,
)
from libervia.schemas import load_schema

PLUGIN_NAME = "policy_default"


def _blank(text: Any) -> bool:
    return not isinstance(text, str) or not text.strip()


# First failing rule wins, so the order is part of the policy.
DEFAULT_RULES: tuple[ClosedLayerRule, ...] = (
    ClosedLayerRule("BLOQUEAR_SEM_RISCO", "the situation names no risks and no uncertainties",
                    lambda s, p: not s.riscos and not s.incertezas),
    ClosedLayerRule("BLOQUEAR_SEM_ALTERNATIVAS", "the situation has fewer than two alternatives",
                    lambda s, p: len(s.alternativas) < 2),
    ClosedLayerRule("BLOQUEAR_SEM_LIMITES", "the protocol defines no limits",
                    lambda s, p: not p.limites_definidos),
    ClosedLayerRule("BLOQUEAR_CONSERVADOR_SEM_CRITERIOS", "a CONSERVADOR profile needs minimum criteria",
                    lambda s, p: p.perfil_risco == RiskProfile.CONSERVADOR and not p.criterios_minimos),
    ClosedLayerRule("BLOQUEAR_SEM_CONSEQUENCIA", "the situation's relevant consequence is blank",
                    lambda s, p: _blank(s.consequencia_relevante)),
)


def rules_for(config: dict[str, Any], tenant_id: str) -> list[ClosedLayerRule]:
    disabled = set(config.get("disabled_rules") or [])
    disabled |= set(((config.get("tenants") or {}).get(tenant_id) or {}).get("disabled_rules") or [])
    return [rule for rule in DEFAULT_RULES if rule.id not in disabled]


_GRAVE = (Severity.ALTA, Severity.CRITICA)
_EXPIRY_RULES = ("MANDATE_EXPIRED_TIME", "MANDATE_EXHAUSTED_USES")


class DefaultAutonomyPolicy:
    """DOMAIN.md's evaluation order; the first matching rule wins."""

    def evaluate(self, request: AutonomyRequest, mandates: Sequence[Mandate], now: datetime) -> AutonomyDecision:
        # With no mandate named, the agent's most recent mandate of any status is the one evaluated.
        mandate = mandates[-1] if mandates else None
        mandate_id = mandate.id if mandate else None

        def deny(regra: str, motivo: str, *, human: bool = False, expire: bool = False) -> AutonomyDecision:
            return AutonomyDecision(False, regra, motivo, human, mandate_id, expire)

        if request.closed_layer_blocked:
            return deny("REGRA_5_CLOSED_LAYER_BLOQUEOU", "the closed layer blocked this decision")
        # No mandate at all is "no mandate of at least that mode" too: DOMAIN.md puts this rule before rule 2.
        if request.modo != AutonomyMode.ENSINO and (mandate is None or mandate.modo.rank < request.modo.rank):
            granted = mandate.modo if mandate is not None else "no mandate"
            return deny("MODO_SOLICITADO_SEM_MANDATO", f"mode {request.modo} requested but the agent has {granted}")
        if mandate is not None:
            refusal = self._unusable(mandate, now, deny)
            if refusal is not None:
                return refusal
        if request.modo == AutonomyMode.ENSINO or (mandate is not None and mandate.modo == AutonomyMode.ENSINO):
            return deny("REGRA_1_ENSINO_SEMPRE_BLOQUEIA", "in ENSINO a human always decides", human=True)
        if mandate is None:
            return deny("REGRA_2_MANDATO_OBRIGATORIO", f"agent {request.agent_id} has no mandate")
        if request.politica not in mandate.politicas_permitidas:
            return deny("REGRA_3_POLITICA_NAO_AUTORIZADA", f"policy {request.politica!r} is not allowed")
        if request.perfil_risco.rank > mandate.perfil_risco_maximo.rank:
            return deny("REGRA_4_PERFIL_EXCEDE_MAXIMO",
                        f"risk profile {request.perfil_risco} exceeds {mandate.perfil_risco_maximo}")
        if mandate.dominios_permitidos and request.dominio not in mandate.dominios_permitidos:
            return deny("DOMINIO_NAO_PERMITIDO", f"domain {request.dominio!r} is outside the mandate")
        if mandate.casos_uso_permitidos and request.caso_uso not in mandate.casos_uso_permitidos:
            return deny("CASO_USO_NAO_PERMITIDO", f"use case {request.caso_uso!r} is outside the mandate")
        contexto = (request.contexto or "").casefold()
        for trigger in mandate.requer_humano_se:
            if trigger.strip() and trigger.casefold() in contexto:
                return deny("GATILHO_HUMANO_ACIONADO", f"human trigger {trigger!r} found in the context",
                            human=True)
        return AutonomyDecision(True, "AUTONOMIA_PERMITIDA", "the mandate allows this decision", False, mandate_id)

    @staticmethod
    def _unusable(mandate: Mandate, now: datetime,
                  deny: Callable[..., AutonomyDecision]) -> AutonomyDecision | None:
        if mandate.status == MandateStatus.SUSPENDED:
            return deny("REGRA_6_MANDATO_SUSPENSO", "the mandate is suspended; human review required", human=True)
        if mandate.status == MandateStatus.REVOKED:
            return deny("MANDATE_REVOKED", "the mandate was revoked")
        if mandate.status == MandateStatus.EXPIRED:
            # Report why it expired (time or uses), as the evaluation that expired it did.
            reason = mandate.end_reason if mandate.end_reason in _EXPIRY_RULES else "MANDATE_EXPIRED"
            return deny(reason, "the mandate has expired")
        if mandate.valid_from and now < parse_iso(mandate.valid_from):
            return deny("MANDATE_NOT_ACTIVE_YET", f"the mandate is valid from {mandate.valid_from}")
        if mandate.valid_until and now >= parse_iso(mandate.valid_until):
            return deny("MANDATE_EXPIRED_TIME", f"the mandate was valid until {mandate.valid_until}", expire=True)
        if mandate.max_uses is not None and mandate.uses >= mandate.max_uses:
            return deny("MANDATE_EXHAUSTED_USES", f"the mandate's {mandate.max_uses} uses are spent", expire=True)
        return None


class DefaultConsequencePolicy:
    """DOMAIN.md's consequence → mandate policy; the first matching branch wins."""

    def decide(self, triggers: AutonomyTriggers, mandate: Mandate | None) -> ConsequenceDecision:
        if triggers.severidade == Severity.CRITICA:
            return ConsequenceDecision(ConsequenceAction.REVOKE, "CONSEQ_1_CRITICA_REVOGA",
                                       "a CRITICA consequence revokes the mandate")
        if triggers.violou_limites:
            return ConsequenceDecision(ConsequenceAction.SUSPEND, "CONSEQ_2_VIOLOU_LIMITES_SUSPENDE",
                                       "the agent violated its limits; suspended pending human review")
        if triggers.perda_relevante and triggers.severidade in _GRAVE:
            return ConsequenceDecision(ConsequenceAction.DEGRADE, "CONSEQ_3_PERDA_RELEVANTE_DEGRADA",
                                       "a relevant loss of high severity degrades the mode one step")
        legal_or_ethical = triggers.categoria in (ConsequenceCategory.LEGAL, ConsequenceCategory.ETICA)
        if legal_or_ethical and triggers.severidade in _GRAVE:
            return ConsequenceDecision(ConsequenceAction.REVIEW, "CONSEQ_4_LEGAL_ETICA_REVISAO",
                                       f"a {triggers.categoria} consequence of high severity needs human review")
        return ConsequenceDecision(ConsequenceAction.NONE, "CONSEQ_5_SEM_ACAO", "no action required")


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema(f"plugins/{PLUGIN_NAME}")


@hookimpl
def libervia_closed_layer_rules(gateway: Any, tenant_id: str) -> list[ClosedLayerRule]:
    return rules_for(gateway.plugin_config(PLUGIN_NAME), tenant_id)


@hookimpl
def libervia_autonomy_policy() -> DefaultAutonomyPolicy:
    return DefaultAutonomyPolicy()


@hookimpl
def libervia_consequence_policy() -> DefaultConsequencePolicy:
    return DefaultConsequencePolicy()

