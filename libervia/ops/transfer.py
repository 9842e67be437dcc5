"""Reading and loading a store's whole content through the storage protocol, whichever store is configured.

Used by ``libervia backup`` (a store without :class:`~libervia.storage.FileArchiving`), ``restore`` (into a store
without it), ``migrate`` (store to store) and ``verify``. Everything goes through :mod:`libervia.storage`: the
host never knows how a store keeps its data.

Consistency while other processes serve, for a store that only offers the protocol: per tenant the checkpoints
are read before the log's head (a checkpoint never describes an entry that does not exist yet, so none points
past the head read after it), the entries are read up to that head, and the registry is read last (every tenant
whose log was captured is in it).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from libervia.eventlog.chain import canonical_json, encode_line
from libervia.eventlog.checkpoints import CheckpointSigner, checkpoints_from_lines
from libervia.eventlog.verify import verify_full
from libervia.gateway import Gateway
from libervia.hookcalls import call_first
from libervia.plugin_manager import LoadedPlugins
from libervia.settings import Settings
from libervia.storage import (
    ArchiveSink,
    Checkpoint,
    CorruptStoreError,
    LogImporter,
    Storage,
    StorageError,
)

# The archive layout (libervia.ops.archive): where each part of a store's content goes.
REGISTRY_PATH = "config/tenants.json"
KEY_USAGE_PATH = "config/key_usage.json"
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


def log_path(tenant: str) -> str:
    return f"tenants/{tenant}/eventlog/events.jsonl"


def checkpoints_path(tenant: str) -> str:
    return f"checkpoints/{tenant}.jsonl"


def signer_for(settings: Settings) -> CheckpointSigner:
    from libervia.app import checkpoint_key

    return CheckpointSigner(checkpoint_key(settings))


async def build_storage(settings: Settings, plugins: LoadedPlugins) -> Storage:
    """The configured store, built the way a gateway builds it, not started."""
    gateway = Gateway(settings, plugins.pm, plugins.configs)
    gateway.checkpoint_signer = signer_for(settings)
    storage = await call_first(plugins.pm.hook.libervia_storage, gateway=gateway)
    if storage is None:
        raise StorageError(f"plugin {settings.get('storage')!r} provided no storage")
    return storage


@asynccontextmanager
async def started_storage(settings: Settings, plugins: LoadedPlugins) -> AsyncIterator[Storage]:
    storage = await build_storage(settings, plugins)
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


def importer(storage: Storage) -> LogImporter:
    if not isinstance(storage, LogImporter):
        raise StorageError(f"storage {storage.name!r} cannot be loaded (it does not implement import_log)")
    return storage


def bar(desc: str, total: int | None, progress: bool, unit: str = "tenant") -> tqdm[Any]:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress, leave=False,
                dynamic_ncols=True)


def _checkpoint_lines(checkpoints: list[Checkpoint]) -> bytes:
    return b"".join(canonical_json(cp.as_dict()) + b"\n" for cp in checkpoints)


async def capture_tenant(storage: Storage, tenant: str) -> tuple[list[Checkpoint], dict[str, Any], Any]:
    """Checkpoints, then the head, of one tenant; and its log, to read up to that head."""
    checkpoints = await storage.events.checkpoints(tenant)
    log = await storage.events.open_log(tenant)
    head = await log.head()
    return [cp for cp in checkpoints if cp.seq <= head.seq], {"seq": head.seq, "hash": head.hash}, log


async def export_store(storage: Storage, sink: ArchiveSink, progress: bool) -> dict[str, dict[str, Any]]:
    """Write the store's content into ``sink`` in the archive layout; return ``{tenant: {seq, hash}}``."""
    chains: dict[str, dict[str, Any]] = {}
    tenants = await storage.events.tenant_ids()
    with bar("backup", len(tenants), progress) as tenants_bar:
        for tenant in tenants:
            checkpoints, head, log = await capture_tenant(storage, tenant)
            try:
                with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as spool:
                    if head["seq"]:
                        async for entry in log.entries(1, head["seq"]):
                            spool.write(encode_line(entry))
                    size = spool.tell()
                    spool.seek(0)
                    sink.add_bytes(checkpoints_path(tenant), _checkpoint_lines(checkpoints))
                    sink.add(log_path(tenant), spool, size)
            finally:
                await log.close()
            chains[tenant] = head
            tenants_bar.update()
    _version, document = await storage.registry.read()
    usage = await storage.registry.key_usage()
    sink.add_bytes(REGISTRY_PATH, orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    sink.add_bytes(KEY_USAGE_PATH, orjson.dumps(usage, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return chains


async def _lines_as_entries(path: Path, tenant: str) -> AsyncIterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CorruptStoreError(f"tenant {tenant}: line {number} of the archived log is not JSON") from exc
            if not isinstance(entry, dict):
                raise CorruptStoreError(f"tenant {tenant}: line {number} of the archived log is not an entry")
            yield entry


def _read_checkpoints(path: Path) -> list[Checkpoint]:
    return checkpoints_from_lines(path.read_bytes()) if path.is_file() else []


async def import_tree(storage: Storage, root: Path, progress: bool) -> None:
    """Load an extracted archive (the layout under ``root``) into ``storage``: every log, then the registry."""
    target = importer(storage)
    tenants_dir = root / "tenants"
    tenants = sorted(p.name for p in tenants_dir.iterdir() if (p / "eventlog" / "events.jsonl").is_file()) \
        if tenants_dir.is_dir() else []
    with bar("restore", len(tenants), progress) as tenants_bar:
        for tenant in tenants:
            await target.import_log(tenant, _lines_as_entries(root / log_path(tenant), tenant),
                                    _read_checkpoints(root / checkpoints_path(tenant)))
            tenants_bar.update()
    registry = root / REGISTRY_PATH
    if registry.is_file():
        await replace_registry(storage, orjson.loads(registry.read_bytes()))
    usage = root / KEY_USAGE_PATH
    if usage.is_file():
        await storage.registry.record_key_usage(orjson.loads(usage.read_bytes()))


async def replace_registry(storage: Storage, document: dict[str, Any]) -> None:
    def replace(current: dict[str, Any]) -> None:
        current.clear()
        current.update(document)

    await storage.registry.update(replace)


async def copy_store(source: Storage, target: Storage, progress: bool,
                     say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Copy every log (with checkpoints), then the registry and key usage, from ``source`` into ``target``.

    Re-runnable: logs the target already holds whole are skipped, a log it holds in part gets the rest.
    """
    loader = importer(target)
    _version, document = await source.registry.read()
    _target_version, existing = await target.registry.read()
    # The target's registry is replaced by the source's: a tenant only the target knows would lose its record and
    # keys (its log left orphaned). A re-run finds only tenants the source has.
    foreign = sorted(set(existing.get("tenants", {})) - set(document.get("tenants", {})))
    if foreign:
        raise StorageError(f"the target already holds tenants the source does not ({', '.join(foreign[:10])}); "
                           "migrate only into an empty store or one a previous migrate of this source filled")
    chains: dict[str, dict[str, Any]] = {}
    tenants = await source.events.tenant_ids()
    total = 0
    with bar("migrate", len(tenants), progress) as tenants_bar:
        for tenant in tenants:
            checkpoints, head, log = await capture_tenant(source, tenant)
            try:
                added = await loader.import_log(tenant, log.entries(1, head["seq"]), checkpoints)
            finally:
                await log.close()
            total += added
            chains[tenant] = head
            tenants_bar.update()
    _version, document = await source.registry.read()  # again: the copy of every log took a while
    await replace_registry(target, document)
    await target.registry.record_key_usage(await source.registry.key_usage())
    say(f"copied {len(tenants)} tenant logs ({total} new entries) and the registry "
        f"({len(document.get('tenants', {}))} tenants)")
    return chains


async def is_empty(storage: Storage) -> bool:
    _version, document = await storage.registry.read()
    return not document.get("tenants") and not await storage.events.tenant_ids()


async def verify_store(storage: Storage, signer: CheckpointSigner, tenants: list[str] | None, progress: bool,
                       expected: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Verify every chain and its checkpoints through the store; print one line per tenant, return the problems.

    ``expected`` (``{tenant: {seq, hash}}``, a backup's manifest) also checks each log's head against it.
    """
    present = set(await storage.events.tenant_ids())
    names = sorted(present) if tenants is None else tenants
    problems: list[str] = []
    if not names:
        print("no tenant event logs in the configured storage")
    with bar("verify", len(names), progress) as tenants_bar:
        for tenant in names:
            if tenant not in present:
                problems.append(f"tenant {tenant}: INVALID: no event log")
                print(problems[-1])
                continue
            log = await storage.events.open_log(tenant)
            try:
                head = await log.head()
                result = await verify_full(log, await storage.events.checkpoints(tenant), signer)
            finally:
                await log.close()
            tenants_bar.update()
            if result["valid"]:
                print(f"tenant {tenant}: valid, {result['totalVerified']} events, head {result['headHash']}")
            else:
                problems.append(f"tenant {tenant}: INVALID at seq {result['firstInvalidIndex']}: {result['reason']}")
                print(problems[-1])
            want = (expected or {}).get(tenant)
            if want is not None and {"seq": head.seq, "hash": head.hash} != {"seq": want.get("seq"),
                                                                              "hash": want.get("hash")}:
                problems.append(f"tenant {tenant}: restored head {{seq {head.seq}, hash {head.hash}}} differs from "
                                f"the backup's {want}")
                print(problems[-1])
    return problems


def verdict(problems: list[str], chains: int, say: Callable[..., None]) -> int:
    """Exit 0 when every chain verified, else 1 with each problem on stderr."""
    if problems:
        for problem in problems:
            say(f"verify: {problem}", error=True)
        return 1
    say(f"verified {chains} tenant chains")
    return 0
