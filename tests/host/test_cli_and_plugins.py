"""The `libervia` command and plugin discovery (built-in, entry point, dotted path), through real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from libervia import __version__
from tests.gateway_process import ADMIN_TOKEN, PEPPER, REPO_ROOT, base_env, free_port

EXAMPLE = REPO_ROOT / "contrib" / "example_plugin"


def libervia(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = base_env(tmp_path / "data", free_port())
    full.update(env)
    return subprocess.run([sys.executable, "-m", "libervia", *args], env=full, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


@pytest.fixture(scope="session")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip into its own target directory: a real entry point."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "example_plugin"
    shutil.copytree(EXAMPLE, source)  # building in place would leave egg-info in the repo
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("libervia_hello-*.dist-info"))
    return target


def test_version(tmp_path: Path) -> None:
    result = libervia(tmp_path, "--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_env_template_and_script(tmp_path: Path) -> None:
    result = libervia(tmp_path, "env-template")
    assert result.returncode == 0
    for name in ("LIBERVIA_AUTH_PEPPER=", "ADMIN_TOKEN=", "BASE_DIR=", "PORT=3000", "HOST=", "LOG_LEVEL=",
                 "CORS_ORIGINS="):
        assert name in result.stdout
    env = base_env(tmp_path, 1)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # as with the deployment's virtualenv active
    script = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "print_env_template.sh")], capture_output=True,
                            text=True, env=env, timeout=60)
    assert script.returncode == 0 and "LIBERVIA_AUTH_PEPPER=" in script.stdout


def test_check_passes_then_lists_each_failure(tmp_path: Path) -> None:
    ok = libervia(tmp_path, "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[ok] Python" in ok.stdout and "[ok] BASE_DIR" in ok.stdout and "[ok] free disk" in ok.stdout
    bad = libervia(tmp_path, "check", LIBERVIA_AUTH_PEPPER="short", PORT="99999", LIBERVIA_MIN_FREE_DISK_MB="1")
    assert bad.returncode == 1
    assert "[FAIL] setting LIBERVIA_AUTH_PEPPER" in bad.stdout and "[FAIL] setting PORT" in bad.stdout
    short_disk = libervia(tmp_path, "check", LIBERVIA_MIN_FREE_DISK_MB=str(10**9))
    assert short_disk.returncode == 1 and "[FAIL] free disk" in short_disk.stdout


def test_plugins_lists_builtins_with_hooks_and_masked_config(tmp_path: Path) -> None:
    result = libervia(tmp_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"health", "auth_admin_token", "auth_tenant_keys", "admin_api", "storage_files"} <= set(rows)
    assert rows["auth_tenant_keys"]["origin"] == "builtin"
    assert "libervia_authenticate" in rows["auth_tenant_keys"]["hooks"]
    assert ADMIN_TOKEN not in result.stdout and PEPPER not in result.stdout
    text = libervia(tmp_path, "plugins")
    assert text.returncode == 0 and "hooks:" in text.stdout


def test_blocked_plugin_is_not_loaded(tmp_path: Path) -> None:
    result = libervia(tmp_path, "plugins", "--json", LIBERVIA_PLUGINS__BLOCK='["health"]')
    assert "health" not in {row["name"] for row in json.loads(result.stdout)}


def _hello_env(**extra: str) -> dict[str, str]:
    return {"LIBERVIA_PLUGIN__HELLO__GREETING": "Bom dia", **extra}


@pytest.mark.parametrize("how", ["entry_point", "dotted_path"])
async def test_example_plugin_loads_and_serves(how: str, installed_example: Path, gateway_factory: Any) -> None:
    if how == "entry_point":
        env = _hello_env(PYTHONPATH=f"{REPO_ROOT}:{installed_example}")
        origin = "entrypoint:libervia-hello"
    else:
        env = _hello_env(PYTHONPATH=f"{REPO_ROOT}:{EXAMPLE}", LIBERVIA_PLUGINS__LOAD='["libervia_hello"]')
        origin = "settings"
    gateway = gateway_factory(env)
    await gateway.create_tenant("hello-tenant")
    token = await gateway.create_key("hello-tenant", "public")
    status, _, body = await gateway.request("GET", "/api/v1/hello", token)
    assert status == 200 and body == {"greeting": "Bom dia, hello-tenant", "role": "public"}
    status, _, _ = await gateway.request("GET", "/api/v1/hello")
    assert status == 401  # the host protects the plugin's route
    listing = libervia(gateway.base_dir.parent, "plugins", "--json", **env)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["hello"]["origin"] == origin
    assert rows["hello"]["config"] == {"greeting": "Bom dia", "shout": False}


@pytest.mark.parametrize("how", ["entry_point", "dotted_path"])
def test_example_plugin_invalid_config_is_refused(how: str, installed_example: Path, tmp_path: Path) -> None:
    env = {"LIBERVIA_PLUGIN__HELLO__GREETING": "", "LIBERVIA_PLUGIN__HELLO__SHOUT": '"loud"'}
    if how == "entry_point":
        env["PYTHONPATH"] = f"{REPO_ROOT}:{installed_example}"
    else:
        env.update(PYTHONPATH=f"{REPO_ROOT}:{EXAMPLE}", LIBERVIA_PLUGINS__LOAD='["libervia_hello"]')
    result = libervia(tmp_path, "serve", **env)
    assert result.returncode == 2
    assert "plugin.hello: $.greeting:" in result.stderr
    assert "plugin.hello: $.shout:" in result.stderr


def test_example_plugin_can_be_blocked(installed_example: Path, tmp_path: Path) -> None:
    result = libervia(tmp_path, "plugins", "--json", PYTHONPATH=f"{REPO_ROOT}:{installed_example}",
                      LIBERVIA_PLUGINS__BLOCK='["hello"]')
    assert "hello" not in {row["name"] for row in json.loads(result.stdout)}
