"""The tenant runtime of one gateway, assembled from the gateway's parts.

:class:`libervia.runtime.TenantRuntime` knows nothing of :class:`libervia.gateway.Gateway`: it is given an event
store, a way to ask for a tenant's policies and quotas, and callbacks. This module is where those come from
(storage, the tenant-policy hooks, the registry, telemetry), so ``runtime`` and ``gateway`` do not import each
other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from libervia.core.policy import TenantPolicies, collect_rules
from libervia.errors import ApiError
from libervia.hookcalls import call_all, call_first
from libervia.runtime import RuntimeParts, TenantRuntime
from libervia.telemetry import EVENTLOG_APPEND

if TYPE_CHECKING:
    from libervia.gateway import Gateway


def build_runtime(gateway: Gateway) -> TenantRuntime:
    """The runtime configured by the ``runtime`` settings, over ``gateway``'s storage, registry and plugins."""
    config = gateway.settings.section("runtime")
    return TenantRuntime(runtime_parts(gateway), idle_ttl_s=config["idle_ttl_s"],
                         max_instances=config["max_instances"], snapshot_every=config.get("snapshot_every", 5000))


def runtime_parts(gateway: Gateway) -> RuntimeParts:
    def on_append(tenant_id: str, count: int) -> None:
        gateway.count(EVENTLOG_APPEND, value=count, tenant_id=tenant_id)

    return RuntimeParts(events=gateway.storage.events, policies=lambda tenant_id: tenant_policies(gateway, tenant_id),
                        quotas=gateway.registry.quotas, on_append=on_append,
                        incarnation=gateway.registry.incarnation, uptime_s=gateway.uptime_s,
                        tenant_counts=gateway.registry.counts_by_status,
                        index_root=gateway.settings.base_dir / "record-index")


async def tenant_policies(gateway: Gateway, tenant_id: str) -> TenantPolicies:
    """Ask the tenant-policy hooks, once per Core start."""
    hook = gateway.pm.hook
    answers = await call_all(hook.libervia_closed_layer_rules, gateway=gateway, tenant_id=tenant_id)
    # pluggy answers last-registered-first; rules run in registration order (built-ins first).
    rules = collect_rules(reversed(answers))
    autonomy = await call_first(hook.libervia_autonomy_policy, gateway=gateway, tenant_id=tenant_id)
    consequence = await call_first(hook.libervia_consequence_policy, gateway=gateway, tenant_id=tenant_id)
    if autonomy is None or consequence is None:
        raise ApiError(503, "POLICY_UNAVAILABLE", "No tenant-policy plugin provides the autonomy and "
                       "consequence policies.")
    return TenantPolicies(closed_layer=rules, autonomy=autonomy, consequence=consequence)
