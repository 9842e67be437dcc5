"""The distribution ships every package: pyproject lists them by hand because of the package-dir mapping."""

from __future__ import annotations

import tomllib

from tests.gateway_process import REPO_ROOT

MAPPING = {"libervia": "libervia", "plugins": "libervia_plugins", "schemas": "libervia_schemas"}


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in MAPPING.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found == listed, f"missing: {sorted(found - listed)}; stale: {sorted(listed - found)}"
