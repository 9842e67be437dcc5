"""Tenant policies are plugins: rules collected in registration order, replaced by a RuleSet, configured from
settings, and overridden for one tenant by a deployment's own plugin."""

from __future__ import annotations

from collections.abc import Callable

from libervia.core.policy import ClosedLayerRule, RuleSet, collect_rules
from libervia_plugins.policy_default import DEFAULT_RULES, rules_for
from tests.core import bodies
from tests.core.test_core_http import TenantClient
from tests.gateway_process import GatewayProcess

EXTRA = ClosedLayerRule("EXTRA", "extra", lambda s, p: False)


def test_rules_add_up_in_registration_order_and_a_replacing_set_starts_over() -> None:
    assert [r.id for r in collect_rules([list(DEFAULT_RULES), [EXTRA]])][-1] == "EXTRA"
    assert [r.id for r in collect_rules([list(DEFAULT_RULES), RuleSet([EXTRA], replace=True)])] == ["EXTRA"]
    replaced_then_added = collect_rules([list(DEFAULT_RULES), RuleSet([EXTRA], replace=True), DEFAULT_RULES[:1]])
    assert [r.id for r in replaced_then_added] == ["EXTRA", "BLOQUEAR_SEM_RISCO"]


def test_disabled_rules_globally_and_per_tenant() -> None:
    config = {"disabled_rules": ["BLOQUEAR_SEM_LIMITES"],
              "tenants": {"acme": {"disabled_rules": ["BLOQUEAR_SEM_RISCO"]}}}
    assert "BLOQUEAR_SEM_LIMITES" not in [r.id for r in rules_for(config, "other")]
    assert len(rules_for(config, "other")) == 4
    assert [r.id for r in rules_for(config, "acme")] == ["BLOQUEAR_SEM_ALTERNATIVAS",
                                                         "BLOQUEAR_CONSERVADOR_SEM_CRITERIOS",
                                                         "BLOQUEAR_SEM_CONSEQUENCIA"]


async def test_a_listed_plugin_adds_a_rule_for_one_tenant_and_replaces_a_policy_for_another(
        gateway_factory: Callable[..., GatewayProcess], unique_id: Callable[[str], str]) -> None:
    gateway = gateway_factory({"LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.extra_rule_plugin"]'})
    strict = await TenantClient.create(gateway, unique_id("strict"))
    status, body = await strict.api("POST", "/decisoes", bodies.decisao())
    assert status == 422 and body["code"] == "CLOSED_LAYER_BLOCKED"
    assert body["details"]["rule"] == "BLOQUEAR_VALOR_ALTO"
    # The built-in rules still run first for that tenant.
    status, body = await strict.api("POST", "/decisoes", bodies.decisao({"consequencia_relevante": " "}))
    assert body["details"]["rule"] == "BLOQUEAR_SEM_CONSEQUENCIA"

    lenient = await TenantClient.create(gateway, unique_id("lenient"))
    other = await TenantClient.create(gateway, unique_id("other"))
    for client, action in ((lenient, "REVIEW"), (other, "REVOKE")):
        decision = (await client.api("POST", "/decisoes", bodies.decisao()))[1]
        assert (await client.manage("POST", "/mandates", bodies.mandato()))[0] == 201
        status, body = await client.api("POST", "/consequencias", bodies.consequencia(
            decision["contrato"]["id"], agentId="agente-1", autonomyTriggers={"severidade": "CRITICA"}))
        assert status == 201 and body["autonomy"]["action"] == action


async def test_policy_default_rules_can_be_switched_off_from_settings(
        gateway_factory: Callable[..., GatewayProcess], unique_id: Callable[[str], str]) -> None:
    gateway = gateway_factory({"LIBERVIA_PLUGIN__POLICY_DEFAULT__DISABLED_RULES": '["BLOQUEAR_SEM_CONSEQUENCIA"]'})
    client = await TenantClient.create(gateway, unique_id("relaxed"))
    status, body = await client.api("POST", "/decisoes", bodies.decisao({"consequencia_relevante": " "}))
    assert status == 201, body
