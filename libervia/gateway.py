"""The object every hook receives as ``gateway``: settings, plugins and the shared services of one process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from libervia.eventlog.checkpoints import CheckpointSigner
    from libervia.ratelimit import RateLimiter
    from libervia.runtime import TenantRuntime
    from libervia.settings import Settings
    from libervia.storage import Storage
    from libervia.tenants.registry import TenantRegistry


class Gateway:
    """Shared state of one gateway process. Attributes are filled in during start-up, in this order:
    ``settings`` and ``pm`` at construction, then ``storage``, ``registry``, ``checkpoint_signer``,
    ``runtime`` and ``rate_limiter`` before any ``libervia_startup`` hook runs.
    """

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, plugin_configs: dict[str, dict[str, Any]]):
        self.settings = settings
        self.pm = pm
        self._plugin_configs = plugin_configs
        self.storage: Storage
        self.registry: TenantRegistry
        self.runtime: TenantRuntime
        self.checkpoint_signer: CheckpointSigner
        self.rate_limiter: RateLimiter | None = None
        self.started_monotonic = time.monotonic()
        self.draining = False

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The validated configuration of plugin ``name``, with its schema defaults filled in."""
        return self._plugin_configs.get(name, {})

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def count(self, name: str, value: float = 1, **labels: str) -> None:
        """Emit a counter event to the telemetry plugins (see :mod:`libervia.telemetry`)."""
        self.pm.hook.libervia_count_event(gateway=self, name=name, labels=labels, value=value)
