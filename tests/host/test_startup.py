"""Start-up refusals: exit code 2 and one line naming the bad setting, through the real `libervia serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import ADMIN_TOKEN, REPO_ROOT, base_env, free_port


def serve(tmp_path: Path, drop: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    full = base_env(tmp_path / "data", free_port())
    for name in drop:
        full.pop(name, None)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "libervia", "serve"], env=full, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


@pytest.mark.parametrize(
    ("drop", "env", "expected"),
    [
        (("LIBERVIA_AUTH_PEPPER",), {}, "LIBERVIA_AUTH_PEPPER: is required"),
        ((), {"LIBERVIA_AUTH_PEPPER": "too-short"}, "LIBERVIA_AUTH_PEPPER: is too short"),
        (("ADMIN_TOKEN",), {}, "ADMIN_TOKEN: is required"),
        ((), {"PORT": "eighty"}, "PORT: must be an integer in 1..65535"),
        ((), {"PORT": "70000"}, "PORT: 70000 is greater than the maximum of 65535"),
        ((), {"PORT": "0"}, "PORT: 0 is less than the minimum of 1"),
        ((), {"LIBERVIA_STORAGE": "storage_nowhere"}, "storage: unknown plugin 'storage_nowhere'"),
        ((), {"LIBERVIA_PLUGINS__LOAD": '["no_such_module_xyz"]'}, "plugin 'no_such_module_xyz' cannot be imported"),
        ((), {"LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.typo_hook_plugin"]'}, "libervia_rotues"),
        ((), {"LIBERVIA_LOG_LEVL": "debug"}, "log_levl: unknown setting"),
        ((), {"LIBERVIA_ENV": "staging"}, "LIBERVIA_ENV: must be one of"),
        ((), {"LIBERVIA_PLUGIN__RATELIMIT_MEMORY__NO_SUCH_OPTION": "1"}, "plugin.ratelimit_memory: $"),
    ],
)
def test_refuses_to_start(tmp_path: Path, drop: tuple[str, ...], env: dict[str, str], expected: str) -> None:
    result = serve(tmp_path, drop, PYTHONPATH=str(REPO_ROOT), **env)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("libervia: ") for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    result = serve(tmp_path, ("ADMIN_TOKEN",), PORT="x", LIBERVIA_AUTH_PEPPER="short")
    assert result.returncode == 2
    for name in ("ADMIN_TOKEN", "PORT", "LIBERVIA_AUTH_PEPPER"):
        assert f"libervia: {name}:" in result.stderr


def test_secret_values_never_echoed(tmp_path: Path) -> None:
    result = serve(tmp_path, LIBERVIA_AUTH_PEPPER="sekrit-value")
    assert result.returncode == 2
    assert "sekrit-value" not in result.stderr + result.stdout


def test_base_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = serve(tmp_path, BASE_DIR=str(blocker / "data"))
    assert result.returncode == 2
    assert "BASE_DIR:" in result.stderr and "cannot be created or written" in result.stderr


def test_production_requires_base_dir(tmp_path: Path) -> None:
    result = serve(tmp_path, ("BASE_DIR", "LIBERVIA_ENV"), NODE_ENV="production")
    assert result.returncode == 2
    assert "BASE_DIR: is required" in result.stderr


def test_corrupt_registry_refuses_and_is_left_untouched(tmp_path: Path) -> None:
    config = tmp_path / "data" / "config"
    config.mkdir(parents=True)
    (config / "tenants.json").write_text('{"tenants": {"acme": ')
    result = serve(tmp_path)
    assert result.returncode == 2
    assert "registry" in result.stderr and "corrupt" in result.stderr
    assert (config / "tenants.json").read_text() == '{"tenants": {"acme": '


def test_admin_token_is_a_raw_string(tmp_path: Path) -> None:
    """dynaconf would parse an all-digit value as an integer; the runbook's names are taken verbatim."""
    from libervia.settings import load_settings

    env = base_env(tmp_path / "data", 3000)
    env["ADMIN_TOKEN"] = "12345678901234567890123456789012"
    env["LIBERVIA_AUTH_PEPPER"] = "@int " + "9" * 40
    settings = load_settings(env)
    assert settings.admin_token == "12345678901234567890123456789012"
    assert settings.auth_pepper == "@int " + "9" * 40
    assert ADMIN_TOKEN not in repr(settings)


def test_production_base_dir_may_come_from_the_settings_file(tmp_path: Path) -> None:
    from libervia.settings import load_settings

    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(f'[production]\nbase_dir = "{tmp_path / "prod-data"}"\n')
    env = base_env(tmp_path / "unused", 3000)
    for name in ("BASE_DIR", "LIBERVIA_ENV"):
        env.pop(name)
    env.update(NODE_ENV="production", LIBERVIA_SETTINGS_FILE=str(settings_file))
    settings = load_settings(env)
    assert settings.env == "production" and settings.base_dir == (tmp_path / "prod-data").resolve()
