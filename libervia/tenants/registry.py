"""The tenant registry: tenants and their hashed keys, kept by the storage plugin, served from memory.

Reads (every authenticated request) use an in-memory copy. The copy follows the store: a background task asks
the store for its version token every ``registry_refresh_s`` (0.25 s by default) and reloads on change, so a key
revoked or a tenant suspended through another gateway process is refused here within that interval. Mutations
go through :meth:`RegistryStore.update`, which is atomic and durable, and refresh the copy at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from loguru import logger

from libervia.clock import format_millis, now_iso
from libervia.errors import ApiError, conflict, invalid_state, not_found
from libervia.storage import RegistryStore
from libervia.tenants.ids import parse_tenant_id
from libervia.tenants.keys import TokenHasher, new_key_id, new_token

T = TypeVar("T")

REGISTRY_FORMAT = 1
DEFAULT_QUOTAS = {"rateLimitRpm": 1000, "maxEvents": None, "maxStorageMB": None}
STATUSES = ("active", "suspended", "deleted")
KEY_USAGE_FLUSH_S = 5.0
# With a store that pushes changes, how often the registry is still polled in case a notification was lost.
PUSH_FALLBACK_POLL_S = 1.0


def empty_document() -> dict[str, Any]:
    return {"format": REGISTRY_FORMAT, "tenants": {}}


@dataclass(frozen=True, slots=True)
class KeyMatch:
    tenant_id: str
    key_id: str
    role: str
    status: str


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    role: str
    token: str
    created_at: str


def public_tenant(record: dict[str, Any]) -> dict[str, Any]:
    """A tenant as the API shows it: never a key hash, keys only counted. A copy: callers may change it."""
    # A JSON round trip copies plain JSON data several times faster than copy.deepcopy.
    view = orjson.loads(orjson.dumps({k: v for k, v in record.items() if k != "keys"}))
    keys = record.get("keys", [])
    view["keys"] = {
        "active": sum(1 for k in keys if k["status"] == "active"),
        "revoked": sum(1 for k in keys if k["status"] == "revoked"),
    }
    return view


class TenantRegistry:
    def __init__(self, store: RegistryStore, pepper: str, refresh_s: float = 0.25) -> None:
        self._store = store
        self._pepper = pepper
        self._refresh_s = refresh_s
        self._version = ""
        self._doc: dict[str, Any] = empty_document()
        self._by_hash: dict[str, KeyMatch] = {}
        self._hash_token = TokenHasher(pepper)
        self._usage: dict[str, str] = {}
        self._usage_dirty: dict[str, str] = {}
        # Keys used since the usage was last read or flushed, with when (epoch milliseconds): formatting the
        # time stamp waits until someone reads it, instead of running on every request.
        self._touched: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._miss_refresh: asyncio.Future[None] | None = None
        self._gone_listeners: list[Callable[[set[str]], Coroutine[Any, Any, None]]] = []
        self._listener_tasks: set[asyncio.Task[None]] = set()
        self.loaded = False

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        version, doc = await self._store.read()
        self._install(version, doc)
        self._usage.update(await self._store.key_usage())
        self.loaded = True
        self._tasks = [asyncio.create_task(self._follow_store(), name="registry-follow"),
                       asyncio.create_task(self._flush_usage_periodically(), name="registry-key-usage")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        await self.flush_key_usage()

    async def _follow_store(self) -> None:
        # A store that pushes changes (``wait_for_change``, e.g. PostgreSQL LISTEN/NOTIFY) wakes us at once; its
        # timeout keeps a slow poll as the fallback for a lost notification channel.
        wait_for_change = getattr(self._store, "wait_for_change", None)
        while True:
            if wait_for_change is None:
                await asyncio.sleep(self._refresh_s)
            else:
                await wait_for_change(PUSH_FALLBACK_POLL_S)
            try:
                await self.refresh()
            except Exception:
                logger.opt(exception=True).error("registry refresh failed; serving the last good copy")

    async def refresh_after_miss(self) -> None:
        """Refresh because a lookup missed: the key or tenant may have been created through another process a
        moment ago. Misses that arrive while a refresh is running share it, so a burst of unknown tokens costs one
        version check (a ``stat`` on the file store), not one each."""
        if self._miss_refresh is None or self._miss_refresh.done():
            self._miss_refresh = asyncio.ensure_future(self.refresh())
        try:
            await asyncio.shield(self._miss_refresh)
        except Exception:
            # The store is unreachable: the miss stands on the last good copy, as every other lookup does.
            logger.opt(exception=True).warning("registry refresh after a lookup miss failed")

    @property
    def copy_version(self) -> str:
        """The store version this process's copy was read at (changes whenever the copy is replaced)."""
        return self._version

    async def refresh(self) -> None:
        if await self._store.version() != self._version:
            version, doc = await self._store.read()
            self._install(version, doc)

    def on_tenants_gone(self, listener: Callable[[set[str]], Coroutine[Any, Any, None]]) -> None:
        """Call ``listener`` with the ids of tenants this copy knew that are gone from the registry, or came back
        as another tenant (a new ``createdAt``): purged, by this process or any other sharing the store."""
        self._gone_listeners.append(listener)

    async def listeners_settled(self) -> None:
        """Wait until the tenants-gone listeners started so far have run (a purge answers after them)."""
        while self._listener_tasks:
            await asyncio.gather(*list(self._listener_tasks), return_exceptions=True)

    def _install(self, version: str, doc: dict[str, Any]) -> None:
        before = self._doc.get("tenants", {})
        after = doc.get("tenants", {})
        gone = {tenant_id for tenant_id, record in before.items()
                if after.get(tenant_id, {}).get("createdAt") != record.get("createdAt")}
        if gone:
            for listener in self._gone_listeners:
                task = asyncio.get_running_loop().create_task(listener(gone))
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_tasks.discard)
        by_hash = {}
        for tenant_id, tenant in doc.get("tenants", {}).items():
            for key in tenant.get("keys", []):
                by_hash[key["hash"]] = KeyMatch(tenant_id, key["keyId"], key["role"], key["status"])
        self._doc, self._version, self._by_hash = doc, version, by_hash

    # --- reads (in memory, cheap) ------------------------------------------------------------------------------

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant as the API shows it, or None."""
        record = self._doc["tenants"].get(tenant_id)
        return public_tenant(record) if record else None

    def status_of(self, tenant_id: str) -> str | None:
        record = self._doc["tenants"].get(tenant_id)
        return record["status"] if record else None

    def quotas(self, tenant_id: str) -> dict[str, Any]:
        record = self._doc["tenants"].get(tenant_id)
        return dict(record["quotas"]) if record else {}

    def rate_limit_rpm(self, tenant_id: str) -> int:
        """The tenant's ``quotas.rateLimitRpm`` (0 = unlimited, also for an unknown tenant), without copying its
        quotas as :meth:`quotas` does: it is read on every rate-limited request."""
        record = self._doc["tenants"].get(tenant_id)
        return int(record["quotas"].get("rateLimitRpm") or 0) if record else 0

    def incarnation(self, tenant_id: str) -> str | None:
        """Which tenant of that id this is (its ``createdAt``; a purged and re-created id has another), or None."""
        record = self._doc["tenants"].get(tenant_id)
        return record.get("createdAt") if record else None

    def is_registered(self, tenant_id: str) -> bool:
        return tenant_id in self._doc["tenants"]

    def all(self, *, include_deleted: bool = True, status: str | None = None) -> list[dict[str, Any]]:
        tenants = []
        for record in sorted(self._doc["tenants"].values(), key=lambda t: t["createdAt"]):
            if status and record["status"] != status:
                continue
            if not include_deleted and record["status"] == "deleted":
                continue
            tenants.append(public_tenant(record))
        return tenants

    def counts_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for record in self._doc["tenants"].values():
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        return counts

    def match_token(self, token: str) -> KeyMatch | None:
        """The key whose stored hash is the token's, looked up on every call (never cached by token), so a key
        revoked or removed in the copy is refused from the next request on. The index is rebuilt with the copy,
        so it holds exactly the keys the copy holds."""
        return self._by_hash.get(self._hash_token(token))

    def list_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        tenant = self._require(self._doc, tenant_id)
        usage = self._settled_usage()
        return [
            {"keyId": k["keyId"], "role": k["role"], "status": k["status"], "createdAt": k["createdAt"],
             "revokedAt": k.get("revokedAt"), "lastUsedAt": usage.get(k["keyId"]),
             "description": k.get("description")}
            for k in tenant["keys"]
        ]

    # --- key usage (batched, never rewrites the registry) ------------------------------------------------------

    def touch_key(self, key_id: str) -> None:
        """Record that ``key_id`` was used now (its ``lastUsedAt``, written in batches)."""
        self._touched[key_id] = time.time_ns() // 1_000_000

    def _settled_usage(self) -> dict[str, str]:
        """The last use of every key, with the uses recorded since the last call formatted and marked for
        writing, in the format of :func:`libervia.clock.now_iso`."""
        if self._touched:
            touched, self._touched = self._touched, {}
            for key_id, millis in touched.items():
                moment = format_millis(millis)
                self._usage[key_id] = moment
                self._usage_dirty[key_id] = moment
        return self._usage

    async def _flush_usage_periodically(self) -> None:
        while True:
            await asyncio.sleep(KEY_USAGE_FLUSH_S)
            try:
                await self.flush_key_usage()
                self._usage.update(await self._store.key_usage())
            except Exception:
                logger.opt(exception=True).warning("could not record key usage; will retry")

    async def flush_key_usage(self) -> None:
        self._settled_usage()
        if not self._usage_dirty:
            return
        pending, self._usage_dirty = self._usage_dirty, {}
        try:
            await self._store.record_key_usage(pending)
        except Exception:
            for key, moment in pending.items():
                self._usage_dirty.setdefault(key, moment)
            raise

    # --- mutations (atomic, durable) ---------------------------------------------------------------------------

    async def _update(self, mutate: Callable[[dict[str, Any]], T]) -> T:
        value, version, doc = await self._store.update(mutate)
        self._install(version, doc)
        return value

    @staticmethod
    def _require(doc: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        tenant = doc["tenants"].get(tenant_id)
        if tenant is None:
            raise not_found("TENANT_NOT_FOUND", f"Tenant {tenant_id!r} does not exist.")
        return tenant

    async def create_tenant(self, raw_id: str, name: str, quotas: dict[str, Any] | None = None,
                            features: dict[str, Any] | None = None,
                            metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        tenant_id = parse_tenant_id(raw_id)
        moment = now_iso()

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            existing = doc["tenants"].get(tenant_id)
            if existing is not None:
                detail = " (deleted ids cannot be reused until purged)" if existing["status"] == "deleted" else ""
                raise conflict("TENANT_EXISTS", f"Tenant {tenant_id!r} already exists{detail}.")
            record = {
                "id": tenant_id, "name": name, "status": "active", "createdAt": moment, "updatedAt": moment,
                "quotas": {**DEFAULT_QUOTAS, **(quotas or {})}, "features": features or {},
                "metadata": metadata or {}, "keys": [],
            }
            doc["tenants"][tenant_id] = record
            return public_tenant(record)

        return await self._update(mutate)

    async def update_tenant(self, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        moment = now_iso()

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            record = self._require(doc, tenant_id)
            if record["status"] == "deleted":
                raise invalid_state(f"Tenant {tenant_id!r} is deleted.")
            if "name" in changes:
                record["name"] = changes["name"]
            for part in ("quotas", "features", "metadata"):
                if part in changes:
                    record[part] = {**record[part], **changes[part]}
            record["updatedAt"] = moment
            return public_tenant(record)

        return await self._update(mutate)

    async def set_status(self, tenant_id: str, new_status: str, allowed_from: tuple[str, ...],
                         reason: str | None = None) -> dict[str, Any]:
        moment = now_iso()

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            record = self._require(doc, tenant_id)
            if record["status"] not in allowed_from:
                raise invalid_state(
                    f"Tenant {tenant_id!r} is {record['status']}; it cannot become {new_status}.",
                    details={"status": record["status"]},
                )
            record["status"] = new_status
            record["statusReason"] = reason
            record["updatedAt"] = moment
            return public_tenant(record)

        return await self._update(mutate)

    async def purge_tenant(self, tenant_id: str) -> None:
        def mutate(doc: dict[str, Any]) -> None:
            record = self._require(doc, tenant_id)
            if record["status"] != "deleted":
                raise invalid_state(f"Tenant {tenant_id!r} must be deleted before it is purged.")
            del doc["tenants"][tenant_id]

        await self._update(mutate)

    async def create_key(self, tenant_id: str, role: str, description: str | None = None,
                         revoke_roles: tuple[str, ...] = ()) -> tuple[NewKey, list[str]]:
        """Create a key (and revoke the tenant's active keys of ``revoke_roles``); the token is returned once."""
        token, key_id, moment = new_token(), new_key_id(), now_iso()
        digest = self._hash_token(token)

        def mutate(doc: dict[str, Any]) -> list[str]:
            record = self._require(doc, tenant_id)
            if record["status"] == "deleted":
                raise invalid_state(f"Tenant {tenant_id!r} is deleted.")
            revoked = []
            for key in record["keys"]:
                if key["status"] == "active" and key["role"] in revoke_roles:
                    key["status"], key["revokedAt"] = "revoked", moment
                    revoked.append(key["keyId"])
            record["keys"].append({"keyId": key_id, "role": role, "hash": digest, "status": "active",
                                   "createdAt": moment, "revokedAt": None, "description": description})
            record["updatedAt"] = moment
            return revoked

        revoked = await self._update(mutate)
        return NewKey(key_id, role, token, moment), revoked

    async def revoke_key(self, tenant_id: str, key_id: str) -> dict[str, Any]:
        moment = now_iso()

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            record = self._require(doc, tenant_id)
            key = next((k for k in record["keys"] if k["keyId"] == key_id), None)
            if key is None:
                raise not_found("KEY_NOT_FOUND", f"Key {key_id!r} does not exist for tenant {tenant_id!r}.")
            if key["status"] == "revoked":
                raise ApiError(409, "KEY_ALREADY_REVOKED", f"Key {key_id!r} is already revoked.")
            key["status"], key["revokedAt"] = "revoked", moment
            record["updatedAt"] = moment
            return {"keyId": key_id, "role": key["role"], "status": "revoked", "revokedAt": moment}

        return await self._update(mutate)
