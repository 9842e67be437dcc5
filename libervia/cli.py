"""The ``libervia`` command: serve, pre-start checks, plugin listing, offline verification and operations."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from libervia import __version__
from libervia.errors import StartupError
from libervia.jsonlog import configure_logging
from libervia.plugin_manager import LoadedPlugins, load_plugins
from libervia.settings import Settings, ensure_writable_dir, free_disk_mb, load_settings

if TYPE_CHECKING:
    pass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2
MIN_PYTHON = (3, 11)

ENV_TEMPLATE = """\
# Libervia Gateway environment. Copy to an env file (contrib/libervia.env) and fill in the blanks.
# (Comments stay on their own lines: env files read by systemd and docker keep anything after '=' verbatim.)

# OBRIGATORIAS / required
# Pepper for token hashes, at least 32 characters:
#   python3 -c 'import secrets; print(secrets.token_urlsafe(48))'
LIBERVIA_AUTH_PEPPER=
# Global admin token, at least 32 characters
ADMIN_TOKEN=
# Data directory (required in production)
BASE_DIR=/data/libervia

# OPCIONAIS / optional
PORT=3000
HOST=0.0.0.0
# development | production (NODE_ENV is accepted as an alias)
LIBERVIA_ENV=production
LOG_LEVEL=info
# Comma separated, e.g. https://app.example.com
CORS_ORIGINS=
# Key signing event-log checkpoints and backups (default: derived from the pepper)
# LIBERVIA_CHECKPOINT_KEY=
# LIBERVIA_STORAGE=storage_postgres
# LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN=postgresql://libervia@db/libervia
# LIBERVIA_RATE_LIMITER=ratelimit_redis
# LIBERVIA_PLUGIN__RATELIMIT_REDIS__URL=redis://redis:6379/0
"""


def _fail(problems: Sequence[str]) -> int:
    for line in problems:
        print(f"libervia: {line}", file=sys.stderr)
    return EXIT_BAD_SETTINGS


def _settings_and_plugins(args: argparse.Namespace) -> tuple[Settings, LoadedPlugins]:
    settings = load_settings(settings_file=args.settings)
    plugins, problems = load_plugins(settings)
    if problems:
        raise StartupError(problems)
    return settings, plugins


def cmd_serve(args: argparse.Namespace) -> int:
    settings, plugins = _settings_and_plugins(args)
    configure_logging(settings.log_level)
    from libervia import event_loop

    workers = args.workers if args.workers is not None else int(settings.get("workers", 1))
    if workers < 0:
        return _fail([f"workers: must be >= 0 (0 = one per CPU), got {workers}"])
    if workers != 1:
        from libervia.workers import serve_workers, worker_count

        return serve_workers(settings, plugins, worker_count(workers))
    from libervia.server import serve
    from libervia.storage import StorageError

    try:
        event_loop.run(serve(settings, plugins), settings.get("event_loop", "auto"))
    except StorageError as exc:
        return _fail([f"storage: {exc}"])
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """The runbook's pre-start checklist; prints every check and exits 1 if any failed."""
    results: list[tuple[bool, str]] = []
    results.append((sys.version_info[:2] >= MIN_PYTHON,
                    f"Python {sys.version.split()[0]} (needs >= {'.'.join(map(str, MIN_PYTHON))})"))
    try:
        settings = load_settings(settings_file=args.settings, check_base_dir=False)
    except StartupError as exc:
        results += [(False, f"setting {line}") for line in exc.problems]
        settings = None
    if settings is not None:
        results.append((True, f"settings valid (environment {settings.env})"))
        problem = ensure_writable_dir(settings.base_dir)
        detail = f": {problem}" if problem else ""
        results.append((problem is None, f"BASE_DIR {settings.base_dir} writable{detail}"))
        if problem is None:
            free = free_disk_mb(settings.base_dir)
            needed = max(settings.min_free_disk_mb, 1024 if settings.env == "production" else 0)
            results.append((free >= needed, f"free disk {free:.0f} MB (needs >= {needed} MB)"))
            purged = settings.base_dir / "purged"  # where storage_files moves purged tenants; nothing reads it
            if purged.is_dir():
                names = sorted(entry.name for entry in purged.iterdir())
                results.append((True, f"purge area {purged}: {len(names)} purged tenant(s) kept outside tenants/: "
                                      f"{', '.join(names) or 'none'}"))
        _plugins, problems = load_plugins(settings)
        results += [(False, f"plugin {line}") for line in problems]
        if not problems:
            results.append((True, f"{len(_plugins.pm.get_plugins())} plugins loaded, configs valid"))
    for ok, text in results:
        print(f"[{'ok' if ok else 'FAIL'}] {text}")
    failed = [text for ok, text in results if not ok]
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_env_template(args: argparse.Namespace) -> int:
    sys.stdout.write(ENV_TEMPLATE)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    settings = load_settings(settings_file=args.settings, check_base_dir=False)
    plugins, problems = load_plugins(settings)
    rows = plugins.describe()
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for row in rows:
            print(f"{row['name']}  ({row['origin']}: {row['module']})")
            print(f"  hooks:  {', '.join(row['hooks']) or '-'}")
            if row["schema"]:
                print(f"  schema: {row['schema']}")
                print(f"  config: {orjson.dumps(row['config']).decode()}")
    if problems:
        return _fail(problems)
    return EXIT_OK


def _offline_settings(args: argparse.Namespace) -> Settings:
    """Settings for offline tools: BASE_DIR may come from --base-dir, and it is not created."""
    environ = dict(os.environ)
    if getattr(args, "base_dir", None):
        environ["BASE_DIR"] = str(args.base_dir)
    return load_settings(environ, settings_file=args.settings, check_base_dir=False)


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person at a terminal; logs and pipes stay clean."""
    return sys.stderr.isatty() and not args.no_progress


def _offline_plugins(settings: Settings) -> LoadedPlugins:
    plugins, problems = load_plugins(settings)
    if problems:
        raise StartupError(problems)
    return plugins


def cmd_verify(args: argparse.Namespace) -> int:
    from libervia.ops.transfer import signer_for, started_storage, verify_store
    from libervia.storage import StorageError

    settings = _offline_settings(args)
    plugins = _offline_plugins(settings)
    tenants = None if args.all or not args.tenant else args.tenant

    async def verify() -> int:
        async with started_storage(settings, plugins) as storage:
            problems = await verify_store(storage, signer_for(settings), tenants, _progress(args))
        return EXIT_FAILED if problems else EXIT_OK

    try:
        return asyncio.run(verify())
    except StorageError as exc:
        print(f"libervia: verify failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_backup(args: argparse.Namespace) -> int:
    from libervia.app import checkpoint_key
    from libervia.ops.backup import BackupError, default_output_dir, run_backup
    from libervia.ops.transfer import build_storage
    from libervia.storage import FileArchiving, StorageError

    settings = _offline_settings(args)
    plugins = _offline_plugins(settings)
    output = Path(args.output) if args.output else default_output_dir(settings.base_dir)

    async def backup() -> Path:
        storage = await build_storage(settings, plugins)
        if isinstance(storage, FileArchiving):
            return await run_backup(storage, output, checkpoint_key(settings), _progress(args),
                                    str(settings.base_dir.resolve()))
        await storage.start()
        try:
            return await run_backup(storage, output, checkpoint_key(settings), _progress(args), repr(storage))
        finally:
            await storage.close()

    try:
        path = asyncio.run(backup())
    except (BackupError, StorageError) as exc:
        print(f"libervia: backup failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from libervia.app import checkpoint_key
    from libervia.ops.restore import run_restore
    from libervia.ops.transfer import build_storage

    settings = _offline_settings(args)
    plugins = _offline_plugins(settings)

    async def restore() -> int:
        storage = await build_storage(settings, plugins)
        return await run_restore(Path(args.archive), storage, checkpoint_key(settings), force=args.force,
                                 progress=_progress(args))

    return asyncio.run(restore())


def cmd_migrate(args: argparse.Namespace) -> int:
    from libervia.ops.migrate import run_migrate

    source = _offline_settings(args)
    environ = dict(os.environ)
    target = load_settings(environ, settings_file=args.to_settings, check_base_dir=False)
    return run_migrate(source, _offline_plugins(source), target, _offline_plugins(target), _progress(args))


def cmd_openapi(args: argparse.Namespace) -> int:
    from libervia.app import collect_routes
    from libervia.gateway import Gateway
    from libervia.openapi import build_openapi

    settings = load_settings(settings_file=args.settings, check_base_dir=False)
    plugins, problems = load_plugins(settings)
    if problems:
        return _fail(problems)
    gateway = Gateway(settings, plugins.pm, plugins.configs)
    document = build_openapi(gateway, collect_routes(gateway))
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def cmd_evidence(args: argparse.Namespace) -> int:
    from libervia.ops.evidence import run_evidence

    token = os.environ.get("ADMIN_TOKEN") or os.environ.get("LIBERVIA_ADMIN_TOKEN")
    log_file = Path(args.log_file) if args.log_file else None
    path = run_evidence(args.url, token, Path(args.output), log_file)
    print(f"Evidencias coletadas em: {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="libervia", description="Libervia Gateway")
    parser.add_argument("--version", action="version", version=f"libervia {__version__}")
    parser.add_argument("--settings", help="settings.toml to use (default: ./settings.toml, or LIBERVIA_SETTINGS)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "start the gateway")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes on one port (0 = one per CPU; default: the workers setting, 1)")
    add("check", cmd_check, "run the pre-start checklist (settings, disk, BASE_DIR, Python, plugins)")
    add("env-template", cmd_env_template, "print a template of the environment variables")
    p = add("plugins", cmd_plugins, "list loaded plugins, their hooks and validated configs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add("openapi", cmd_openapi, "print the OpenAPI document generated from the loaded plugins' routes")
    p = add("verify", cmd_verify, "verify every tenant log through the configured store (exit 0 valid, 1 invalid)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tenant", action="append", help="tenant id (repeatable)")
    group.add_argument("--all", action="store_true", help="every tenant (the default)")
    p.add_argument("--base-dir", help="data directory (default: BASE_DIR from settings)")
    p.add_argument("--no-progress", action="store_true")
    p = add("backup", cmd_backup, "consistent, signed tar.gz backup of the configured store (works while serving)")
    p.add_argument("--output", help="directory for the archive (default: BASE_DIR/../backups)")
    p.add_argument("--base-dir")
    p.add_argument("--no-progress", action="store_true")
    p = add("restore", cmd_restore, "verify and restore a backup archive into the configured store")
    p.add_argument("archive")
    p.add_argument("--force", action="store_true", help="restore into a non-empty BASE_DIR (old content kept aside)")
    p.add_argument("--base-dir")
    p.add_argument("--no-progress", action="store_true")
    p = add("migrate", cmd_migrate, "copy every tenant, key and log into the store of other settings, verified "
                                    "on both sides (re-runnable; stop the gateways first)")
    p.add_argument("--to-settings", required=True, metavar="OTHER.toml", help="settings naming the target store")
    p.add_argument("--base-dir", help="the source's data directory (default: BASE_DIR from settings)")
    p.add_argument("--no-progress", action="store_true")
    p = add("evidence", cmd_evidence, "collect incident evidence (secrets redacted) into a tar.gz")
    p.add_argument("--url", default=f"http://localhost:{os.environ.get('PORT', '3000')}")
    p.add_argument("--output", default=tempfile.gettempdir())
    p.add_argument("--log-file")
    from libervia import scaffold
    scaffold.add_command(add)

    from libervia.admin_cli import add_admin_commands  # tenants, keys, audit: the admin API over HTTP

    add_admin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StartupError as exc:
        return _fail(exc.problems)
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
