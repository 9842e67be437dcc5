"""The built-in telemetry and policy plugins pass the kit's contracts (a third-party plugin subclasses the same)."""

from __future__ import annotations

import pytest

from libervia.testing.contracts.policies import (
    AutonomyPolicyContract,
    ClosedLayerRulesContract,
    ConsequencePolicyContract,
)
from libervia.testing.contracts.telemetry import TelemetryContract
from tests.plugins_fixtures import extra_rule_plugin


class TestPrometheusTelemetry(TelemetryContract):
    pass


class TestDefaultClosedLayerRules(ClosedLayerRulesContract):
    pass


class TestDefaultAutonomyPolicy(AutonomyPolicyContract):
    pass


class TestDefaultConsequencePolicy(ConsequencePolicyContract):
    pass


class TestExtraRulePluginRules(ClosedLayerRulesContract):
    """A deployment's rule plugin (tests/plugins_fixtures) for one of the tenants it answers for."""

    @pytest.fixture
    def contract_plugins(self) -> list[object]:
        return [extra_rule_plugin]

    @pytest.fixture
    def policy_tenant(self) -> str:
        return "strict-acme"


class TestExtraRulePluginConsequences(ConsequencePolicyContract):
    @pytest.fixture
    def contract_plugins(self) -> list[object]:
        return [extra_rule_plugin]

    @pytest.fixture
    def policy_tenant(self) -> str:
        return "lenient-acme"
