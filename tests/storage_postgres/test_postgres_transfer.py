"""Backup, restore, verify and migration between the embedded store and PostgreSQL, through the storage protocol.

The embedded side is a real BASE_DIR written by the real file store (the same one the backup tests build); the
PostgreSQL side is a schema of the test's own on the real server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from libervia.ops.restore import EXIT_OK, EXIT_TARGET_NOT_EMPTY
from tests.conftest import postgres_test_dsn
from tests.gateway_process import REPO_ROOT, base_env
from tests.ops.offline import migrate, run_backup, run_restore, verify
from tests.ops.test_backup_restore import KEY, append_batches, archive_members, build_base_dir
from tests.storage_postgres.conftest import drop_schema, fetch_rows, postgres_env

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings selecting a fresh schema; it and any schema set aside from it are dropped afterwards."""
    dsn = postgres_test_dsn()
    schema = f"test_{secrets.token_hex(6)}"
    yield postgres_env(dsn, schema)

    async def drop_all() -> None:
        for row in await fetch_rows(dsn, "SELECT nspname FROM pg_namespace WHERE nspname = $1 "
                                         "OR nspname LIKE $1 || '_pre_restore_%'", schema):
            await drop_schema(dsn, row["nspname"])

    asyncio.run(drop_all())


def pg_rows(env: dict[str, str], sql: str) -> list[asyncpg.Record]:
    return asyncio.run(fetch_rows(env["LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN"],
                                  sql.format(schema=env["LIBERVIA_PLUGIN__STORAGE_POSTGRES__SCHEMA"])))


def logs(base_dir: Path) -> dict[str, bytes]:
    return {path.parent.parent.name: path.read_bytes() for path in base_dir.glob("tenants/*/eventlog/events.jsonl")}


def test_a_file_store_backup_restores_into_postgres_and_back(tmp_path: Path, postgres: dict[str, str]) -> None:
    source = tmp_path / "data"
    build_base_dir(source)
    archive = run_backup(source, tmp_path / "backups", KEY)

    assert run_restore(archive, tmp_path / "unused", KEY, force=False, extra=postgres) == EXIT_OK
    assert verify(tmp_path / "unused", KEY, postgres) == []
    counts = {row["tenant"]: row["n"] for row in pg_rows(
        postgres, 'SELECT tenant, count(*) AS n FROM "{schema}".events GROUP BY tenant')}
    assert counts == {"acme": 47, "globex": 3}

    # Backed up from PostgreSQL (through the protocol), restored into an empty BASE_DIR: the same logs, byte for byte.
    from_postgres = run_backup(tmp_path / "unused", tmp_path / "backups2", KEY, extra=postgres)
    manifest = orjson.loads(archive_members(from_postgres)["manifest.json"])
    assert manifest["chains"] == orjson.loads(archive_members(archive)["manifest.json"])["chains"]
    back = tmp_path / "back"
    assert run_restore(from_postgres, back, KEY, force=False) == EXIT_OK
    assert logs(back) == logs(source)
    assert orjson.loads((back / "config/tenants.json").read_bytes()) == \
        orjson.loads((source / "config/tenants.json").read_bytes())

    # A store that holds data is only restored over when forced, and then its content is set aside, not dropped.
    assert run_restore(archive, tmp_path / "unused", KEY, force=False, extra=postgres) == EXIT_TARGET_NOT_EMPTY
    assert run_restore(archive, tmp_path / "unused", KEY, force=True, extra=postgres) == EXIT_OK
    aside = pg_rows(postgres, "SELECT nspname FROM pg_namespace WHERE nspname LIKE '{schema}_pre_restore_%'")
    assert len(aside) == 1
    assert pg_rows(postgres, 'SELECT count(*) AS n FROM "{schema}".events')[0]["n"] == 50


def test_migrate_files_to_postgres_and_back_resumes_without_duplicates(tmp_path: Path,
                                                                         postgres: dict[str, str]) -> None:
    source = tmp_path / "data"
    build_base_dir(source)
    assert migrate((source, None), (tmp_path / "unused", postgres), KEY) == 0

    # New writes on the source after a first (or an interrupted) run: a second run adds exactly those.
    asyncio.run(append_batches(source, {"acme": [5], "initech": [2]}))
    assert migrate((source, None), (tmp_path / "unused", postgres), KEY) == 0
    assert migrate((source, None), (tmp_path / "unused", postgres), KEY) == 0
    rows = pg_rows(postgres, 'SELECT tenant, seq FROM "{schema}".events ORDER BY tenant, seq')
    per_tenant: dict[str, list[int]] = {}
    for row in rows:
        per_tenant.setdefault(row["tenant"], []).append(row["seq"])
    assert per_tenant == {"acme": list(range(1, 53)), "globex": [1, 2, 3], "initech": [1, 2]}
    checkpoints = pg_rows(postgres, 'SELECT tenant, seq, signature FROM "{schema}".checkpoints')
    assert len(checkpoints) == len({tuple(row) for row in checkpoints}), "a checkpoint was copied twice"

    back = tmp_path / "back"
    assert migrate((tmp_path / "unused", postgres), (back, None), KEY) == 0
    assert logs(back) == logs(source)
    assert verify(back, KEY) == []


def test_migrate_refuses_a_target_that_holds_another_log(tmp_path: Path, postgres: dict[str, str]) -> None:
    source, other = tmp_path / "data", tmp_path / "other"
    build_base_dir(source)
    asyncio.run(append_batches(other, {"acme": [3]}))
    assert migrate((other, None), (tmp_path / "unused", postgres), KEY) == 0
    assert migrate((source, None), (tmp_path / "unused", postgres), KEY) != 0
    rows = pg_rows(postgres, """SELECT count(*) AS n FROM "{schema}".events WHERE tenant = 'acme'""")
    assert rows[0]["n"] == 3, "nothing of the diverging source log was written"


def test_the_libervia_migrate_command_moves_a_base_dir_into_postgres(tmp_path: Path, postgres: dict[str, str]) -> None:
    source = tmp_path / "data"
    build_base_dir(source)
    other = tmp_path / "postgres.toml"
    other.write_text(
        '[default]\nstorage = "storage_postgres"\n'
        f'[default.plugin.storage_postgres]\ndsn = "{postgres["LIBERVIA_PLUGIN__STORAGE_POSTGRES__DSN"]}"\n'
        f'schema = "{postgres["LIBERVIA_PLUGIN__STORAGE_POSTGRES__SCHEMA"]}"\n')
    env = base_env(source, 3000)
    env["LIBERVIA_CHECKPOINT_KEY"] = KEY.decode()
    done = subprocess.run([sys.executable, "-m", "libervia", "migrate", "--to-settings", str(other)], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "migrated 2 tenant chains" in done.stdout and "verified 2 tenant chains" in done.stdout
    verified = subprocess.run([sys.executable, "-m", "libervia", "--settings", str(other), "verify", "--all"],
                              env={**env, "LIBERVIA_SETTINGS_FILE": str(other)}, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "tenant acme: valid, 47 events" in verified.stdout
    assert os.path.isdir(source)


def test_migrate_refuses_a_target_whose_registry_holds_tenants_the_source_lacks(
        tmp_path: Path, postgres: dict[str, str]) -> None:
    """The target's registry is replaced by the source's: migrating into a store that already serves other tenants
    would drop their records and keys. It is refused, and the target keeps them (on the old code it was wiped)."""
    first, second = tmp_path / "first", tmp_path / "second"
    build_base_dir(first)
    assert migrate((first, None), (tmp_path / "unused", postgres), KEY) == 0
    shutil.copytree(first, second)  # the same logs: only the registry differs
    registry = second / "config" / "tenants.json"
    document = orjson.loads(registry.read_bytes())
    del document["tenants"]["globex"]
    registry.write_bytes(orjson.dumps(document))
    assert migrate((second, None), (tmp_path / "unused", postgres), KEY) != 0
    back = tmp_path / "back"
    assert migrate((tmp_path / "unused", postgres), (back, None), KEY) == 0
    assert "globex" in orjson.loads((back / "config" / "tenants.json").read_bytes())["tenants"]
