"""The operator commands' entry points as tests call them: settings built for a BASE_DIR (or a PostgreSQL schema)
and a checkpoint key, then backup, restore, verify and migrate exactly as ``libervia`` runs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libervia.ops.backup import run_backup as backup_storage
from libervia.ops.migrate import run_migrate
from libervia.ops.restore import run_restore as restore_storage
from libervia.ops.transfer import build_storage, signer_for, started_storage, verify_store
from libervia.plugin_manager import LoadedPlugins, load_plugins
from libervia.settings import Settings, load_settings
from tests.gateway_process import ADMIN_TOKEN, PEPPER, REPO_ROOT


def offline_settings(base_dir: Path, key: bytes, extra: dict[str, str] | None = None) -> tuple[Settings,
                                                                                                 LoadedPlugins]:
    environ = {"LIBERVIA_AUTH_PEPPER": PEPPER, "ADMIN_TOKEN": ADMIN_TOKEN, "BASE_DIR": str(base_dir),
               "LIBERVIA_ENV": "test", "LIBERVIA_CHECKPOINT_KEY": key.decode(), **(extra or {})}
    settings = load_settings(environ, settings_file=str(REPO_ROOT / "settings.toml"), check_base_dir=False)
    plugins, problems = load_plugins(settings)
    assert not problems, problems
    return settings, plugins


def run_backup(base_dir: Path, output: Path, key: bytes, progress: bool = False,
               extra: dict[str, str] | None = None) -> Path:
    settings, plugins = offline_settings(base_dir, key, extra)

    async def backup() -> Path:
        storage = await build_storage(settings, plugins)
        if extra:  # a store reached through the protocol must be started first
            await storage.start()
        try:
            return await backup_storage(storage, output, key, progress, str(base_dir))
        finally:
            await storage.close()

    return asyncio.run(backup())


def run_restore(archive: Path, base_dir: Path, key: bytes, force: bool, progress: bool = False,
                extra: dict[str, str] | None = None) -> int:
    settings, plugins = offline_settings(base_dir, key, extra)

    async def restore() -> int:
        return await restore_storage(archive, await build_storage(settings, plugins), key, force, progress)

    return asyncio.run(restore())


def verify(base_dir: Path, key: bytes, extra: dict[str, str] | None = None) -> list[str]:
    settings, plugins = offline_settings(base_dir, key, extra)

    async def check() -> list[str]:
        async with started_storage(settings, plugins) as storage:
            return await verify_store(storage, signer_for(settings), None, False)

    return asyncio.run(check())


def migrate(source: tuple[Path, dict[str, str] | None], target: tuple[Path, dict[str, str] | None],
            key: bytes) -> int:
    source_settings, source_plugins = offline_settings(source[0], key, source[1])
    target_settings, target_plugins = offline_settings(target[0], key, target[1])
    return run_migrate(source_settings, source_plugins, target_settings, target_plugins, progress=False)
