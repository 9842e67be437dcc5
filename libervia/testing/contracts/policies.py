"""The contracts of the tenant-policy hooks: closed-layer rules, autonomy policy, consequence policy.

Subclass one, put your plugin in ``contract_plugins`` and, if your plugin answers only for some tenants, name one
of them in the ``policy_tenant`` fixture (default ``"contract-tenant"``). The hooks are asked through the host, as
a tenant's Core asks them when it starts, on an in-process gateway that runs your plugin next to the built-ins.

Every contract first checks that the implementation under test (your plugins, or the built-ins when
``contract_plugins`` is empty) answers the hook for ``policy_tenant``, so the checks below are about its answers.

* :class:`ClosedLayerRulesContract`: the answers merge (lists or :class:`~libervia.core.policy.RuleSet`) into
  :class:`~libervia.core.policy.ClosedLayerRule` objects with unique ids and a reason; ``check`` answers
  ``(bool, str)`` the same way twice for the same input, for a complete situation and for an empty one;
* :class:`AutonomyPolicyContract`: the policy is an :class:`~libervia.core.policy.AutonomyPolicy`; it answers an
  :class:`~libervia.core.policy.AutonomyDecision` naming a rule and a reason, deterministically; and it never
  permits a VIVENCIA mode for an agent that has no mandate (DOMAIN.md);
* :class:`ConsequencePolicyContract`: the policy is a :class:`~libervia.core.policy.ConsequencePolicy` answering
  a :class:`~libervia.core.policy.ConsequenceDecision` with a :class:`~libervia.core.model.ConsequenceAction`, a
  rule and a reason for every combination of severity and category, deterministically.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from libervia.core.model import AutonomyMode, ConsequenceAction, ConsequenceCategory, RiskProfile, Severity
from libervia.core.policy import (
    AutonomyDecision,
    AutonomyPolicy,
    AutonomyRequest,
    AutonomyTriggers,
    ClosedLayerRule,
    ConsequenceDecision,
    ConsequencePolicy,
    ProtocolInput,
    SituationInput,
    collect_rules,
)
from libervia.hookcalls import call_all, call_first
from libervia.testing.contracts.harness import GatewayContract
from libervia.testing.gateway import GatewayHarness

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def situations() -> list[tuple[SituationInput, ProtocolInput]]:
    complete = SituationInput(
        dominio="financeiro", contexto="contexto", objetivo="objetivo", incertezas=["taxa"],
        alternativas=[{"descricao": "A"}, {"descricao": "B"}], riscos=[{"descricao": "perda"}],
        consequencia_relevante="perda de capital", caso_uso_declarado=1,
        raw={"dominio": "financeiro"})
    empty = SituationInput(dominio="", contexto="", objetivo="", incertezas=[], alternativas=[], riscos=[],
                          consequencia_relevante="", caso_uso_declarado=0, raw={})
    protocolo = ProtocolInput(criterios_minimos=["c"], riscos_considerados=["r"],
                               limites_definidos=[{"valor": 10}], perfil_risco=RiskProfile.MODERADO,
                               alternativas_avaliadas=["A", "B"], alternativa_escolhida="A", raw={})
    bare = ProtocolInput(criterios_minimos=[], riscos_considerados=[], limites_definidos=[],
                          perfil_risco=RiskProfile.CONSERVADOR, alternativas_avaliadas=[],
                          alternativa_escolhida="", raw={})
    return [(complete, protocolo), (empty, bare), (complete, bare), (empty, protocolo)]


class PolicyContract(GatewayContract):
    hook_name = ""   # the policy hook the subclass checks

    @pytest.fixture
    def policy_tenant(self) -> str:
        return "contract-tenant"

    async def test_the_implementation_under_test_answers_for_the_tenant(
            self, contract_gateway: GatewayHarness, contract_plugins: Sequence[object], policy_tenant: str) -> None:
        """The other checks read the merged answers of every plugin: without this one, a plugin that answers
        nothing for ``policy_tenant`` would pass them on the built-ins' answers."""
        caller = getattr(contract_gateway.gateway.pm.hook, self.hook_name)
        tested = [impl for impl in caller.get_hookimpls() if not contract_plugins or impl.plugin in contract_plugins]
        assert tested, f"no plugin under test implements {self.hook_name}"
        arguments = {"gateway": contract_gateway.gateway, "tenant_id": policy_tenant}
        answers = []
        for impl in tested:
            answer = impl.function(**{name: arguments[name] for name in impl.argnames})
            answers.append(await answer if inspect.isawaitable(answer) else answer)
        assert any(answer is not None and answer != [] for answer in answers), (
            f"the plugin under test answers nothing to {self.hook_name} for tenant {policy_tenant!r}: name a "
            "tenant it answers for in the policy_tenant fixture")


class ClosedLayerRulesContract(PolicyContract):
    hook_name = "libervia_closed_layer_rules"

    async def rules(self, harness: GatewayHarness, tenant_id: str) -> list[ClosedLayerRule]:
        gateway = harness.gateway
        # Core merges the answers in registration order (pluggy calls last registered first).
        answers = await call_all(gateway.pm.hook.libervia_closed_layer_rules, gateway=gateway, tenant_id=tenant_id)
        return collect_rules(reversed(answers))

    async def test_answers_merge_into_rules_with_unique_ids(self, contract_gateway: GatewayHarness,
                                                            policy_tenant: str) -> None:
        rules = await self.rules(contract_gateway, policy_tenant)
        ids = [rule.id for rule in rules]
        assert all(isinstance(rule_id, str) and rule_id for rule_id in ids)
        assert len(ids) == len(set(ids))
        assert all(isinstance(rule.reason, str) and rule.reason for rule in rules)

    async def test_check_is_a_deterministic_verdict(self, contract_gateway: GatewayHarness,
                                                    policy_tenant: str) -> None:
        for rule in await self.rules(contract_gateway, policy_tenant):
            for situacao, protocolo in situations():
                verdict = rule.check(situacao, protocolo)
                assert isinstance(verdict, tuple) and len(verdict) == 2, rule.id
                assert isinstance(verdict[0], bool) and isinstance(verdict[1], str) and verdict[1], rule.id
                assert rule.check(situacao, protocolo) == verdict, rule.id


class AutonomyPolicyContract(PolicyContract):
    hook_name = "libervia_autonomy_policy"

    async def policy(self, harness: GatewayHarness, tenant_id: str) -> AutonomyPolicy:
        gateway = harness.gateway
        policy = await call_first(gateway.pm.hook.libervia_autonomy_policy, gateway=gateway, tenant_id=tenant_id)
        assert isinstance(policy, AutonomyPolicy)
        return policy

    @staticmethod
    def requests() -> list[AutonomyRequest]:
        return [AutonomyRequest(agent_id="agent-1", modo=modo, politica="padrao", perfil_risco=perfil,
                                dominio="financeiro", caso_uso=1)
                for modo, perfil in itertools.product(AutonomyMode, RiskProfile)]

    async def test_answers_a_decision_naming_rule_and_reason(self, contract_gateway: GatewayHarness,
                                                             policy_tenant: str) -> None:
        policy = await self.policy(contract_gateway, policy_tenant)
        for request in self.requests():
            decision = policy.evaluate(request, [], NOW)
            assert isinstance(decision, AutonomyDecision)
            assert isinstance(decision.regra, str) and decision.regra
            assert isinstance(decision.motivo, str) and decision.motivo
            assert policy.evaluate(request, [], NOW) == decision

    async def test_no_vivencia_without_a_mandate(self, contract_gateway: GatewayHarness,
                                                 policy_tenant: str) -> None:
        policy = await self.policy(contract_gateway, policy_tenant)
        for request in self.requests():
            if request.modo is not AutonomyMode.ENSINO:
                assert policy.evaluate(request, [], NOW).permitido is False, request.modo


class ConsequencePolicyContract(PolicyContract):
    hook_name = "libervia_consequence_policy"

    async def policy(self, harness: GatewayHarness, tenant_id: str) -> ConsequencePolicy:
        gateway = harness.gateway
        policy = await call_first(gateway.pm.hook.libervia_consequence_policy, gateway=gateway,
                                  tenant_id=tenant_id)
        assert isinstance(policy, ConsequencePolicy)
        return policy

    @staticmethod
    def triggers() -> list[AutonomyTriggers]:
        combos: list[Any] = list(itertools.product([None, *Severity], [None, *ConsequenceCategory], [False, True]))
        return [AutonomyTriggers(severidade=None if s is None else s.value, categoria=None if c is None else c.value,
                                 violou_limites=v) for s, c, v in combos]

    async def test_every_trigger_gets_an_action_rule_and_reason(self, contract_gateway: GatewayHarness,
                                                                policy_tenant: str) -> None:
        policy = await self.policy(contract_gateway, policy_tenant)
        for triggers in self.triggers():
            decision = policy.decide(triggers, None)
            assert isinstance(decision, ConsequenceDecision)
            assert isinstance(decision.action, ConsequenceAction)
            assert isinstance(decision.rule, str) and decision.rule
            assert isinstance(decision.reason, str) and decision.reason
            assert policy.decide(triggers, None) == decision
