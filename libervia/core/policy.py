"""The tenant policies a plugin can provide: closed-layer rules, autonomy evaluation, consequence policy.

The Core asks the policy hooks once, when a tenant's Core starts (see :mod:`libervia.hookspecs`), and keeps the
result in a :class:`TenantPolicies`. The built-in implementations live in the ``policy_default`` plugin; a
deployment adds a rule or replaces a policy with its own plugin, globally or for one tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from libervia.core.model import AutonomyMode, ConsequenceAction, Mandate, RiskProfile


@dataclass(frozen=True, slots=True)
class SituationInput:
    """What the closed layer sees of a situation (as submitted, before it is recorded)."""

    dominio: str
    contexto: str
    objetivo: str
    incertezas: Sequence[Any]
    alternativas: Sequence[Any]
    riscos: Sequence[Any]
    consequencia_relevante: str
    caso_uso_declarado: int
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProtocolInput:
    """What the closed layer sees of a protocol that passed validation."""

    criterios_minimos: Sequence[Any]
    riscos_considerados: Sequence[Any]
    limites_definidos: Sequence[Any]
    perfil_risco: RiskProfile
    alternativas_avaliadas: Sequence[str]
    alternativa_escolhida: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClosedLayerRule:
    """One closed-layer rule: ``blocks(situacao, protocolo)`` is true when the decision must not be made.

    Subclass and override :meth:`check` when the reason depends on the input.
    """

    id: str
    reason: str
    blocks: Callable[[SituationInput, ProtocolInput], bool]

    def check(self, situation: SituationInput, protocol: ProtocolInput) -> tuple[bool, str]:
        return bool(self.blocks(situation, protocol)), self.reason


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules a plugin returns from ``libervia_closed_layer_rules``; ``replace=True`` drops the rules before it."""

    rules: Sequence[ClosedLayerRule]
    replace: bool = False


def collect_rules(results_in_registration_order: Iterable[Any]) -> list[ClosedLayerRule]:
    """Merge every plugin's answer: lists add their rules, a replacing :class:`RuleSet` starts over."""
    rules: list[ClosedLayerRule] = []
    for result in results_in_registration_order:
        if result is None:
            continue
        if isinstance(result, RuleSet):
            if result.replace:
                rules = []
            rules.extend(result.rules)
        else:
            rules.extend(result)
    for rule in rules:
        if not isinstance(rule, ClosedLayerRule):
            raise TypeError(f"closed-layer rule {rule!r} is not a libervia.core.policy.ClosedLayerRule")
    return rules


@dataclass(frozen=True, slots=True)
class ClosedLayerBlock:
    rule: str
    reason: str


def run_closed_layer(rules: Sequence[ClosedLayerRule], situation: SituationInput,
                     protocol: ProtocolInput) -> ClosedLayerBlock | None:
    """The first rule that blocks wins."""
    for rule in rules:
        blocked, reason = rule.check(situation, protocol)
        if blocked:
            return ClosedLayerBlock(rule=rule.id, reason=reason)
    return None


# --- autonomy --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AutonomyRequest:
    agent_id: str
    modo: AutonomyMode
    politica: str
    perfil_risco: RiskProfile
    dominio: str | None = None
    caso_uso: int | None = None
    contexto: str | None = None
    mandate_id: str | None = None
    closed_layer_blocked: bool = False   # the referenced episode was blocked by the closed layer


@dataclass(frozen=True, slots=True)
class AutonomyDecision:
    permitido: bool
    regra: str
    motivo: str
    requer_revisao_humana: bool = False
    mandate_id: str | None = None
    expire: bool = False     # the evaluated mandate must be expired (time or uses ran out)


@runtime_checkable
class AutonomyPolicy(Protocol):
    def evaluate(self, request: AutonomyRequest, mandates: Sequence[Mandate], now: datetime) -> AutonomyDecision:
        """Decide ``request``; ``mandates`` are the agent's mandates of every status, oldest first, or only the
        one the request named."""


# --- consequences ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AutonomyTriggers:
    severidade: str | None = None
    categoria: str | None = None
    violou_limites: bool = False
    reversivel: bool | None = None
    perda_relevante: bool = False


@dataclass(frozen=True, slots=True)
class ConsequenceDecision:
    action: ConsequenceAction
    rule: str
    reason: str


@runtime_checkable
class ConsequencePolicy(Protocol):
    def decide(self, triggers: AutonomyTriggers, mandate: Mandate | None) -> ConsequenceDecision:
        """Map a consequence's triggers to an action on the agent's mandate (the Core applies it)."""


@dataclass(frozen=True, slots=True)
class TenantPolicies:
    closed_layer: Sequence[ClosedLayerRule]
    autonomy: AutonomyPolicy
    consequence: ConsequencePolicy
