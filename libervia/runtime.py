"""``TenantRuntime``: the running tenant Cores of one gateway process.

A tenant's Core is created on its first request, exactly once even when many first requests arrive together
(a per-tenant lock guards creation), and evicted when idle for ``idle_ttl_s`` or when more than
``max_instances`` tenants are open (least recently used first). Evicting flushes: the Core finishes its
in-flight command, flushes its record index, and the tenant's log is closed.

Each open tenant has one log object, shared by its Core and by anyone else who asks for
:meth:`TenantRuntime.event_log` (the audit and admin routes), so there is one writer per process and every
append is counted for telemetry in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from libervia.clock import now_iso
from libervia.core.core import CoreClosedError, Quotas, TenantCore, summarise
from libervia.core.policy import TenantPolicies
from libervia.errors import ApiError
from libervia.storage import EventDraft, EventStore, LogHead, Snapshot, TenantEventLog
from libervia.tenants.ids import tenant_id_problem

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RuntimeParts:
    """What the runtime needs from the rest of the gateway, and nothing more (see :mod:`libervia.runtime_parts`).

    ``policies(tenant)`` asks the tenant-policy plugins once per Core start; ``quotas(tenant)`` reads the
    tenant's quotas from the registry before each command; ``on_append(tenant, n)`` hears of every append made
    through the runtime's logs (telemetry). ``uptime_s`` and ``tenant_counts`` feed ``/admin/metrics``.
    """

    events: EventStore
    policies: Callable[[str], Awaitable[TenantPolicies]]
    quotas: Callable[[str], Quotas]
    on_append: Callable[[str, int], None]
    # Which incarnation of the id the registry knows (its createdAt; None once purged): an instance opened for
    # another incarnation is dropped before use, so a re-created tenant never sees its predecessor's instance.
    incarnation: Callable[[str], str | None]
    uptime_s: Callable[[], float]
    tenant_counts: Callable[[], dict[str, int]]
    # Where each tenant's record index lives (``<index_root>/<tenant id>/``); None keeps every index in a private
    # temporary file, rebuilt from the log at each start.
    index_root: Path | None = None

    def index_dir(self, tenant_id: str) -> Path | None:
        if self.index_root is None or tenant_id_problem(tenant_id) is not None:
            return None  # an id that is not a safe directory name never reaches a path
        return self.index_root / tenant_id


Entries = list[dict[str, Any]]


class _CountingLog:
    """The tenant's log as the runtime hands it out: every append is reported to telemetry."""

    def __init__(self, log: TenantEventLog, on_append: Callable[[int], None]) -> None:
        self._log = log
        self._on_append = on_append
        self.tenant_id = log.tenant_id

    async def append(self, drafts: Sequence[EventDraft], expected_seq: int | None = None) -> list[dict[str, Any]]:
        entries = await self._log.append(drafts, expected_seq=expected_seq)
        self._on_append(len(entries))
        return entries

    @property
    def append_chained(self) -> Callable[[Entries, list[bytes]], asyncio.Future[Entries]] | None:
        """The store's pipelined append, counted once durable (None where the store has none: the Core then
        appends one command at a time)."""
        chained = getattr(self._log, "append_chained", None)
        if chained is None:
            return None

        def counted(entries: Entries, lines: list[bytes]) -> asyncio.Future[Entries]:
            future: asyncio.Future[Entries] = chained(entries, lines)

            def stored(done: asyncio.Future[Entries]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self._on_append(len(entries))

            future.add_done_callback(stored)
            return future

        return counted

    @property
    def commit_stats(self) -> Callable[[], dict[str, int]] | None:
        return getattr(self._log, "commit_stats", None)

    def entries(self, from_seq: int = 1, to_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._log.entries(from_seq, to_seq)

    async def head(self) -> LogHead:
        return await self._log.head()

    def status(self) -> dict[str, Any]:
        return self._log.status()

    async def size_bytes(self) -> int:
        return await self._log.size_bytes()

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._log.save_snapshot(snapshot)

    async def load_snapshot(self) -> Snapshot | None:
        return await self._log.load_snapshot()

    async def close(self) -> None:
        await self._log.close()

    async def discard(self) -> None:
        """The store's ``discard`` when it has one (see ``TenantEventLog.close``), else ``close``."""
        discard = getattr(self._log, "discard", None)
        await (discard() if discard is not None else self._log.close())


@dataclass(slots=True)
class _Slot:
    log: _CountingLog
    last_used: float
    incarnation: str | None
    core: TenantCore | None = None


class TenantRuntime:
    def __init__(self, parts: RuntimeParts, idle_ttl_s: float, max_instances: int, *,
                 snapshot_every: int = 5000, sweep_interval_s: float | None = None) -> None:
        self._parts = parts
        self.idle_ttl_s = idle_ttl_s
        self.max_instances = max(1, max_instances)
        self.snapshot_every = snapshot_every
        self._sweep_interval_s = sweep_interval_s or min(30.0, max(0.05, idle_ttl_s / 4))
        self._slots: dict[str, _Slot] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # The last mandate counts seen per tenant, kept after eviction so the tenant list does not have to
        # start every tenant's Core (see :meth:`mandate_counts`).
        self._summaries: dict[str, dict[str, Any]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.evictions = {"idle": 0, "capacity": 0, "shutdown": 0}
        self.cores_started = 0
        self.events_appended = 0
        self._retired_counters: dict[str, int] = {}

    # --- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="libervia-runtime-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.shutdown_all()

    async def shutdown_all(self) -> int:
        """Stop every instance (flushing first); returns how many were stopped."""
        tenants = list(self._slots)
        stopped = 0
        for tenant_id in tenants:
            try:
                stopped += await self._evict(tenant_id, "shutdown")
            except Exception:  # one tenant's failure must not leave the others' logs open
                logger.opt(exception=True).error("stopping tenant {} failed", tenant_id)
        return stopped

    async def shutdown_tenant(self, tenant_id: str) -> bool:
        """Stop the tenant's instance if it runs; False when nothing was running."""
        return bool(await self._evict(tenant_id, "shutdown"))

    async def forget_tenant(self, tenant_id: str) -> None:
        """Stop the tenant and drop everything kept about it (a purge: the id may come back from genesis)."""
        await self._evict(tenant_id, "shutdown")
        index_dir = self._parts.index_dir(tenant_id)
        if index_dir is not None:  # a cache of what was purged; a new tenant of this id names its own file anyway
            shutil.rmtree(index_dir, ignore_errors=True)
        # The per-tenant lock stays: a caller may be waiting on it, and a fresh lock beside it would let two
        # instances of one tenant start in this process.
        self._summaries.pop(tenant_id, None)

    async def discard_tenants(self, tenant_ids: Iterable[str]) -> None:
        """Drop the instances of tenants purged through any process, writing nothing: their data is gone, or the
        id already names a new tenant whose log and snapshots the old instance must not touch."""
        for tenant_id in tenant_ids:
            async with self._lock(tenant_id):
                slot = self._slots.pop(tenant_id, None)
                if slot is not None:
                    if slot.core is not None:
                        slot.core.discard()
                    await slot.log.discard()
                    logger.bind(tenantId=tenant_id).info("tenant {} instance dropped (purged)", tenant_id)
            self._summaries.pop(tenant_id, None)  # the lock stays, as in forget_tenant

    # --- access --------------------------------------------------------------------------------------------------

    async def core(self, tenant_id: str) -> TenantCore:
        """The tenant's Core, started on first use (exactly one per tenant)."""
        slot = await self._live_slot(tenant_id)
        if slot is None or slot.core is None or slot.core.closed:
            async with self._lock(tenant_id):
                slot = await self._open(tenant_id)
                if slot.core is None or slot.core.closed:
                    slot.core = await self._start_core(tenant_id, slot.log)
            await self._enforce_cap(keep=tenant_id)
        slot.last_used = time.monotonic()
        assert slot.core is not None
        return slot.core

    async def call(self, tenant_id: str, action: Callable[[TenantCore], Awaitable[T]]) -> T:
        """Run ``action`` on the tenant's Core; if the instance was evicted between lookup and use, run it once
        more on the fresh instance (the stopped one wrote nothing for this call)."""
        try:
            return await action(await self.core(tenant_id))
        except CoreClosedError as exc:
            if exc.discarded:
                # Purged before the call ran: a fresh instance would open an empty log under the gone id, or the
                # log of another tenant created since under it, which this call was never meant for.
                raise ApiError(404, "TENANT_NOT_FOUND", f"Tenant {tenant_id} does not exist.") from None
            return await action(await self.core(tenant_id))

    async def _live_slot(self, tenant_id: str) -> _Slot | None:
        """The tenant's slot, unless it was opened for an earlier incarnation of the id (purged, perhaps through
        another process, and created again): that one is dropped, writing nothing."""
        slot = self._slots.get(tenant_id)
        if slot is None:
            return None
        current = self._parts.incarnation(tenant_id)
        if slot.incarnation is None:
            slot.incarnation = current  # opened while the tenant was being created: this is its incarnation
        elif current is not None and slot.incarnation != current:
            await self.discard_tenants([tenant_id])
            return None
        return slot

    async def event_log(self, tenant_id: str) -> TenantEventLog:
        """The tenant's open log, the same object its Core appends to."""
        slot = await self._live_slot(tenant_id)
        if slot is None:
            async with self._lock(tenant_id):
                slot = await self._open(tenant_id)
            await self._enforce_cap(keep=tenant_id)
        slot.last_used = time.monotonic()
        return slot.log

    def active_count(self) -> int:
        return sum(1 for slot in self._slots.values() if slot.core is not None)

    def running(self, tenant_id: str) -> TenantCore | None:
        slot = self._slots.get(tenant_id)
        return slot.core if slot is not None else None

    def open_log_status(self, tenant_id: str) -> dict[str, Any] | None:
        """The status of the tenant's log if this process has it open, without opening it."""
        slot = self._slots.get(tenant_id)
        return slot.log.status() if slot is not None else None

    def instances(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        result = []
        for slot in self._slots.values():
            if slot.core is None:
                continue
            info = slot.core.metrics()
            info["idleSeconds"] = round(now - slot.last_used, 3)
            info["logStatus"] = slot.log.status()
            result.append(info)
        return result

    def health(self) -> dict[str, Any]:
        """Instance health for ``/admin/health``: degraded when any open tenant log reports itself degraded."""
        instances = []
        for tenant_id, slot in self._slots.items():
            log_status = slot.log.status()
            instances.append({"tenant": tenant_id, "running": slot.core is not None,
                              "healthy": not log_status.get("degraded", False),
                              "busy": slot.core.busy if slot.core is not None else False,
                              "errorCount": log_status.get("errorCount", 0)})
        degraded = [i["tenant"] for i in instances if not i["healthy"]]
        return {"status": "degraded" if degraded else "ok", "degradedTenants": degraded,
                "activeInstances": self.active_count(), "instances": instances}

    def metrics(self) -> dict[str, Any]:
        """Gateway-wide totals for ``/admin/metrics``: instances, events, commands (running and stopped ones)."""
        totals = dict(self._retired_counters)
        for slot in self._slots.values():
            if slot.core is not None:
                for name, value in slot.core.counters.items():
                    totals[name] = totals.get(name, 0) + value
        return {"timestamp": now_iso(), "uptimeSeconds": round(self._parts.uptime_s(), 3),
                "tenants": self._parts.tenant_counts(), **self.stats(),
                "eventsAppendedTotal": self.events_appended, "commandsTotal": totals.get("commands", 0),
                "rejectedTotal": totals.get("rejected", 0), "snapshotsTotal": totals.get("snapshots", 0)}

    def stats(self) -> dict[str, Any]:
        return {"activeInstances": self.active_count(), "openLogs": len(self._slots),
                "maxInstances": self.max_instances, "idleTtlSeconds": self.idle_ttl_s,
                "snapshotEvery": self.snapshot_every, "coresStarted": self.cores_started,
                "evictions": dict(self.evictions)}

    async def mandate_counts(self, tenant_id: str) -> dict[str, int]:
        """``{active, suspended}`` for the tenant list without starting every Core on every call.

        A running Core answers from its state; otherwise the counts it had when it last ran in this process are
        used; a tenant that has no event log has no mandates. Only a tenant with a log whose Core never ran here
        is started once (then it ages out like any idle instance). Counts of tenants changed by another gateway
        process since they ran here can lag; the tenant's dashboard is always exact.
        """
        core = self.running(tenant_id)
        if core is None and tenant_id not in self._summaries:
            if tenant_id not in await self._tenants_with_logs():
                return {"active": 0, "suspended": 0}
            core = await self.core(tenant_id)
        if core is not None:
            self._summaries[tenant_id] = summarise(core.state)
        mandates = self._summaries[tenant_id]["mandates"]
        return {"active": mandates["active"], "suspended": mandates["suspended"]}

    async def _tenants_with_logs(self) -> set[str]:
        return set(await self._parts.events.tenant_ids())

    # --- internals -----------------------------------------------------------------------------------------------

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        lock = self._locks.get(tenant_id)
        if lock is None:
            lock = self._locks[tenant_id] = asyncio.Lock()
        return lock

    async def _open(self, tenant_id: str) -> _Slot:
        """The tenant's slot, opening its log if needed. Call with the tenant's lock held."""
        slot = self._slots.get(tenant_id)
        if slot is None:
            raw = await self._parts.events.open_log(tenant_id)

            def count(n: int) -> None:
                self.events_appended += n
                self._parts.on_append(tenant_id, n)

            slot = self._slots[tenant_id] = _Slot(log=_CountingLog(raw, count), last_used=time.monotonic(),
                                                  incarnation=self._parts.incarnation(tenant_id))
        return slot

    async def _start_core(self, tenant_id: str, log: TenantEventLog) -> TenantCore:
        policies = await self._parts.policies(tenant_id)
        quotas = self._parts.quotas
        core = TenantCore(tenant_id, log, policies, quotas=lambda: quotas(tenant_id),
                          snapshot_every=self.snapshot_every, index_dir=self._parts.index_dir(tenant_id))
        started = time.monotonic()
        await core.start()
        self.cores_started += 1
        self._summaries[tenant_id] = summarise(core.state)
        logger.bind(tenantId=tenant_id).info(
            "tenant {} core started at seq {} ({} events replayed, snapshot {}) in {:.1f} ms", tenant_id,
            core.state.seq, core.replayed_events, core.replayed_from_snapshot, (time.monotonic() - started) * 1000)
        return core

    async def _evict(self, tenant_id: str, why: str, only: _Slot | None = None) -> int:
        """Stop the tenant's instance (``only`` that one: not an instance that replaced it while this waited)."""
        async with self._lock(tenant_id):
            slot = self._slots.get(tenant_id)
            if slot is None or (only is not None and slot is not only):
                return 0
            del self._slots[tenant_id]
            try:
                if slot.core is not None:
                    await slot.core.close()
                    self._summaries[tenant_id] = summarise(slot.core.state)
                    for name, value in slot.core.counters.items():
                        self._retired_counters[name] = self._retired_counters.get(name, 0) + value
            finally:
                await slot.log.close()
            self.evictions[why] = self.evictions.get(why, 0) + 1
            logger.bind(tenantId=tenant_id).info("tenant {} instance stopped ({})", tenant_id, why)
            return 1

    async def _enforce_cap(self, keep: str) -> None:
        while len(self._slots) > self.max_instances:
            candidates = [(slot.last_used, tid) for tid, slot in self._slots.items() if tid != keep]
            if not candidates:
                return
            _, victim = min(candidates)
            await self._evict(victim, "capacity")

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            now = time.monotonic()
            deadline = now - self.idle_ttl_s
            for tenant_id, slot in list(self._slots.items()):
                try:
                    if slot.core is not None and not slot.core.busy and slot.last_used < now - self._sweep_interval_s:
                        await slot.core.release_idle()  # idle a while: its index file can go until the next call
                    # (Each await lets requests in: the slot may have been evicted, or replaced by a new one.)
                    if slot.last_used < deadline and not (slot.core is not None and slot.core.busy):
                        await self._evict(tenant_id, "idle", only=slot)
                except Exception:
                    logger.opt(exception=True).error("sweeping idle tenant {} failed", tenant_id)
