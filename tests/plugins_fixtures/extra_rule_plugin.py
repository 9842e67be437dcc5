"""A deployment's own tenant-policy plugin, for the tests: loaded by dotted path from ``plugins.load``.

* Tenants whose id starts with ``strict-`` get one more closed-layer rule, BLOQUEAR_VALOR_ALTO, after the
  built-in ones.
* Tenants whose id starts with ``lenient-`` get a consequence policy that only ever opens a review case, in place
  of the built-in one.
Every other tenant keeps the defaults: returning None from a ``firstresult`` hook means "not mine".
"""

from __future__ import annotations

from typing import Any

from libervia import hookimpl
from libervia.core.model import ConsequenceAction, Mandate
from libervia.core.policy import AutonomyTriggers, ClosedLayerRule, ConsequenceDecision

VALOR_MAXIMO = 50_000

HIGH_VALUE_RULE = ClosedLayerRule(
    "BLOQUEAR_VALOR_ALTO", f"a limit above {VALOR_MAXIMO} needs the board",
    lambda situacao, protocolo: any(isinstance(limite, dict) and isinstance(limite.get("valor"), int | float)
                                    and limite["valor"] > VALOR_MAXIMO for limite in protocolo.limites_definidos))


class ReviewOnlyPolicy:
    def decide(self, triggers: AutonomyTriggers, mandate: Mandate | None) -> ConsequenceDecision:
        if triggers.severidade in ("ALTA", "CRITICA"):
            return ConsequenceDecision(ConsequenceAction.REVIEW, "EXTRA_SEMPRE_REVISAO",
                                       "this tenant reviews every grave consequence by hand")
        return ConsequenceDecision(ConsequenceAction.NONE, "EXTRA_SEM_ACAO", "no action")


@hookimpl
def libervia_closed_layer_rules(tenant_id: str) -> list[ClosedLayerRule]:
    return [HIGH_VALUE_RULE] if tenant_id.startswith("strict-") else []


@hookimpl
def libervia_consequence_policy(tenant_id: str) -> Any:
    return ReviewOnlyPolicy() if tenant_id.startswith("lenient-") else None
