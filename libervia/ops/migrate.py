"""``libervia migrate --to-settings OTHER.toml``: copy every tenant, key and log from the configured store into
the store ``OTHER.toml`` configures (the embedded store to PostgreSQL, or back), verifying every chain on both
sides.

The source is verified first (nothing is copied from a store whose chains do not hold); the copy goes through the
storage protocol (:func:`libervia.ops.transfer.copy_store`), logs first and the registry last, so a tenant only
appears in the target's registry once its log is whole; then every target chain is verified, its head checked
against the source's. Interrupted and run again, it finishes without duplicates: a store's ``import_log`` keeps
the entries it already holds and adds only the rest. Stop the gateways first: writes made during a migration
reach the target only if it is run again.

Both settings must share the checkpoint key (``LIBERVIA_CHECKPOINT_KEY`` or the pepper): the checkpoints move
with the logs and are verified on the target with its key.
"""

from __future__ import annotations

import asyncio
import sys

from libervia.ops.transfer import copy_store, signer_for, started_storage, verdict, verify_store
from libervia.plugin_manager import LoadedPlugins
from libervia.settings import Settings
from libervia.storage import StorageError

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_FAILED = 5


def _say(message: str, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


def _same_store(source: Settings, target: Settings) -> bool:
    name = source.get("storage")
    if name != target.get("storage"):
        return False
    source_config = (source.get("plugin") or {}).get(name) or {}
    target_config = (target.get("plugin") or {}).get(name) or {}
    return source_config == target_config and source.base_dir.resolve() == target.base_dir.resolve()


def run_migrate(source: Settings, source_plugins: LoadedPlugins, target: Settings, target_plugins: LoadedPlugins,
                progress: bool) -> int:
    if _same_store(source, target):
        _say("refused: both settings name the same store", error=True)
        return EXIT_FAILED
    try:
        return asyncio.run(_migrate(source, source_plugins, target, target_plugins, progress))
    except StorageError as exc:
        _say(f"migrate failed: {exc}; run it again once the cause is fixed (it resumes without duplicates)",
             error=True)
        return EXIT_FAILED


async def _migrate(source: Settings, source_plugins: LoadedPlugins, target: Settings,
                   target_plugins: LoadedPlugins, progress: bool) -> int:
    async with started_storage(source, source_plugins) as origin, \
            started_storage(target, target_plugins) as destination:
        _say(f"verifying the source ({source.get('storage')})")
        problems = await verify_store(origin, signer_for(source), None, progress)
        if problems:
            _say(f"refused: {len(problems)} source chain(s) do not verify; nothing was copied", error=True)
            return EXIT_VERIFY_FAILED
        chains = await copy_store(origin, destination, progress, _say)
        _say(f"verifying the target ({target.get('storage')})")
        problems = await verify_store(destination, signer_for(target), sorted(chains), progress, expected=chains)
    _say(f"migrated {len(chains)} tenant chains")
    return verdict(problems, len(chains), _say)
