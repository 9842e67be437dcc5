"""Tenant Cores over the real file event store in a temporary BASE_DIR, with the default tenant policies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from libervia.core import TenantCore, TenantPolicies
from libervia.core.policy import ClosedLayerRule
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia_plugins.policy_default import DEFAULT_RULES, DefaultAutonomyPolicy, DefaultConsequencePolicy
from libervia_plugins.storage_files.eventlog import FileEventStore
from tests.core import bodies

SIGNER_KEY = b"core-tests-checkpoint-key-0123456789"


def default_policies(rules: Sequence[ClosedLayerRule] = DEFAULT_RULES) -> TenantPolicies:
    return TenantPolicies(closed_layer=list(rules), autonomy=DefaultAutonomyPolicy(),
                          consequence=DefaultConsequencePolicy())


class CoreHarness:
    """Opens Cores over one BASE_DIR and can restart them from what is on disk."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.store = FileEventStore(base_dir, CheckpointSigner(SIGNER_KEY))
        self.cores: list[TenantCore] = []

    async def open(self, tenant: str = "acme", *, policies: TenantPolicies | None = None,
                   snapshot_every: int = 1000, quotas: dict[str, Any] | None = None,
                   clock: Callable[[], datetime] | None = None) -> TenantCore:
        log = await self.store.open_log(tenant)
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        core = TenantCore(tenant, log, policies or default_policies(), snapshot_every=snapshot_every,
                          quotas=(lambda: quotas) if quotas is not None else None,
                          index_dir=self.index_dir(tenant), **extra)
        await core.start()
        self.cores.append(core)
        return core

    def index_dir(self, tenant: str) -> Path:
        """Where the tenant's record index lives, as the runtime places it."""
        return self.base_dir / "record-index" / tenant

    async def restart(self, core: TenantCore, *, crash: bool = False, **options: Any) -> TenantCore:
        """Close the Core and its log, then build a new Core from a new store over the same files. ``crash``
        skips the Core's close, as a killed process would (what it had not flushed is only in the log)."""
        if crash:
            core.discard()
            await asyncio.sleep(0)  # let the discarded Core close its index
        else:
            await core.close()
        await core.log.close()
        self.cores.remove(core)
        await self.store.close()
        self.store = FileEventStore(self.base_dir, CheckpointSigner(SIGNER_KEY))
        return await self.open(core.tenant_id, policies=core.policies, **options)

    async def close(self) -> None:
        for core in self.cores:
            await core.close()
        await self.store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[CoreHarness]:
    h = CoreHarness(tmp_path / "data")
    yield h
    await h.close()


@pytest.fixture
async def core(harness: CoreHarness) -> TenantCore:
    return await harness.open()


async def all_entries(core: TenantCore) -> list[dict[str, Any]]:
    return [entry async for entry in core.log.entries()]


async def decided(core: TenantCore, actor: str = "key_test") -> dict[str, Any]:
    """A decision that went through: the 201 body."""
    return await core.decide(bodies.decisao(), actor=actor, request_id="req-1")


async def mandate_for(core: TenantCore, agent_id: str = "agente-1", **changes: Any) -> dict[str, Any]:
    return await core.grant_mandate(bodies.mandato(agent_id, **changes), actor="key_admin")
