"""The runbook's scripts: thin, strict wrappers that hand their arguments to the matching `libervia` subcommand."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "print_env_template.sh": "env-template",
    "run_backup_frio.sh": "backup",
    "restore_backup.sh": "restore",
    "collect_evidence.sh": "evidence",
}


def fake_libervia(bin_dir: Path) -> Path:
    """A `libervia` on PATH that records how it was called, standing in for the installed console script."""
    bin_dir.mkdir()
    record = bin_dir / "calls"
    script = bin_dir / "libervia"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit 7\n')
    script.chmod(0o755)
    return record


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_is_executable_and_strict(name: str):
    path = ROOT / "scripts" / name
    assert path.stat().st_mode & stat.S_IXUSR
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_passes_its_arguments_and_exit_code_through(name: str, tmp_path: Path):
    record = fake_libervia(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    args = ["/backups/libervia-backup-x.tar.gz", "--force", "--base-dir", "/data dir with spaces"]
    result = subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 7
    assert record.read_text().splitlines() == [SCRIPTS[name], *args]


def test_restore_script_requires_an_archive():
    result = subprocess.run([str(ROOT / "scripts" / "restore_backup.sh")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 64
    assert "usage:" in result.stderr


def test_env_template_falls_back_to_python_module(tmp_path: Path):
    # No `libervia` command on PATH: the script runs `python -m libervia` with the interpreter it is given.
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([str(ROOT / "scripts" / "print_env_template.sh")], env=env, capture_output=True,
                            text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("LIBERVIA_AUTH_PEPPER", "ADMIN_TOKEN", "BASE_DIR"):
        assert name in result.stdout
