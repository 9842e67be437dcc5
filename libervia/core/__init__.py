"""The tenant Core: an event-sourced decision-governance engine, one instance per tenant (see DOMAIN.md).

``model`` names the states and records, ``projection`` folds the log into state, ``commands`` turns requests
into events (``decision_commands`` and ``autonomy_commands``, built from ``command_kit``), ``policy`` defines what
tenant-policy plugins provide, and ``core.TenantCore`` ties them together.
"""

from libervia.core.core import CoreClosedError, TenantCore
from libervia.core.policy import (
    AutonomyDecision,
    AutonomyPolicy,
    AutonomyRequest,
    AutonomyTriggers,
    ClosedLayerRule,
    ConsequenceDecision,
    ConsequencePolicy,
    RuleSet,
    TenantPolicies,
)

__all__ = [
    "AutonomyDecision",
    "AutonomyPolicy",
    "AutonomyRequest",
    "AutonomyTriggers",
    "ClosedLayerRule",
    "ConsequenceDecision",
    "ConsequencePolicy",
    "CoreClosedError",
    "RuleSet",
    "TenantCore",
    "TenantPolicies",
]
