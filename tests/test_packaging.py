"""The distribution ships every package: pyproject lists them by hand because of the package-dir mapping."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.gateway_process import REPO_ROOT

MAPPING = {"libervia": "libervia", "plugins": "libervia_plugins", "schemas": "libervia_schemas"}


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in MAPPING.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    for data_dir in (REPO_ROOT / "schemas").iterdir():  # schema folders are shipped as data packages
        if data_dir.is_dir() and any(data_dir.glob("*.json")):
            found.add(f"libervia_schemas.{data_dir.name}")
    assert found == listed, f"missing: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_a_regular_install_ships_plugins_and_schemas(tmp_path: Path) -> None:
    """`pip install .` (not editable): the installed copy finds its plugins and schemas without the repo."""
    target = tmp_path / "site"
    source = tmp_path / "source"  # a copy: building in place would leave build/ and egg-info in the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in MAPPING:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    probe = ("import libervia, libervia_plugins.storage_files, libervia.schemas as s;"
             "print(libervia.__file__); s.load_schema('settings'); s.load_schema('plugins/storage_files');"
             "s.load_schema('requests/tenant_create');"
             "import libervia_plugins.admin_ui as ui; assert {'index.html', 'console.js'} <= ui.load_assets().keys()")
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target))
