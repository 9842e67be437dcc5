"""``libervia new-plugin NAME`` generates a package that pip-installs into a fresh virtualenv and passes its tests.

The fresh virtualenv sees this gateway's environment through a ``.pth`` line (no network, no copy of the
dependencies), so the generated package is the only thing installed into it: through its entry point, as a
deployment would.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from libervia.scaffold import names


def run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_generated_plugin_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    created = run(sys.executable, "-m", "libervia", "new-plugin", "greeter-x", "--directory", str(tmp_path),
                  cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    root = tmp_path / "greeter-x"
    for relative in ("pyproject.toml", "README.md", "src/libervia_greeter_x/__init__.py",
                     "src/libervia_greeter_x/settings.schema.json", "tests/test_greeter_x.py"):
        assert (root / relative).is_file(), relative
    assert 'greeter_x = "libervia_greeter_x"' in (root / "pyproject.toml").read_text()

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    fresh_site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).stdout.strip()
    (Path(fresh_site) / "_libervia_gateway_env.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    installed = run(str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    str(root), cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert list(Path(fresh_site).glob("libervia_greeter_x-*.dist-info"))

    tested = run(str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", cwd=root)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "5 passed" in tested.stdout


def test_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    for bad in ("My Plugin", "1abc", "class", "a--b"):
        with pytest.raises(ValueError):
            names(bad)
    (tmp_path / "taken").mkdir()
    result = run(sys.executable, "-m", "libervia", "new-plugin", "taken", "--directory", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
