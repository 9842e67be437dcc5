"""The commands of ``docs/RUNBOOK.md``, read from the document itself and run the way an operator pastes them.

Tests take each command from the runbook rather than from a copy, so a command edited in the document is the
command tested. The operator's only adaptations are the ones a real deployment needs and that the runbook
states: the gateway's port instead of ``3000``, the placeholders (``<tenant-id>``...) filled in, and the log
read from the gateway's log file where the runbook reads ``docker logs libervia-gateway``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway_process import REPO_ROOT, GatewayProcess

RUNBOOK = REPO_ROOT / "docs" / "RUNBOOK.md"
RUNBOOK_EN = REPO_ROOT / "docs" / "RUNBOOK.en.md"
IN_CI = os.environ.get("CI", "").lower() == "true"

_BLOCK = re.compile(r"^[ \t]*```bash\n(.*?)^[ \t]*```", re.S | re.M)
_EXPECTED = re.compile(r"^#\s*(?:Esperado|Expected):\s*(.*)$")
_PLACEHOLDER = re.compile(r"<([A-Za-z][\w-]*)>")
# Every form the runbook uses (`docker logs libervia-gateway [--since 15m|--tail=50] 2>&1`) reads the whole
# container log; on a host install the same lines are in the gateway's log file.
_DOCKER_LOGS = re.compile(r"docker logs libervia-gateway(?: [^|>]*?)? 2>&1")


@dataclass(frozen=True)
class Step:
    """One command of the runbook and the output the runbook says to expect, if it says."""

    command: str
    expected: str | None


def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips locally and fails under CI=true, where it must be installed."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true (apt-get install -y {name})")
        pytest.skip(f"{name} is not installed")
    return path


def _blocks(document: Path) -> list[str]:
    return [_dedent(block) for block in _BLOCK.findall(document.read_text())]


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


def _steps(document: Path) -> list[Step]:
    """Split every bash block into commands: a line ending in a backslash continues on the next one, and a
    ``# Esperado:`` comment right after a command is what that command prints."""
    steps: list[Step] = []
    for block in _blocks(document):
        pending: list[str] = []
        previous_was_command = False
        for line in block.splitlines():
            if pending:
                pending.append(line)
            elif line.startswith("#") or not line.strip():
                expected = _EXPECTED.match(line)
                if expected and previous_was_command:
                    steps[-1] = Step(steps[-1].command, expected.group(1).strip())
                previous_was_command = False
                continue
            else:
                pending = [line]
            if not line.endswith("\\"):
                steps.append(Step("\n".join(pending), None))
                pending = []
                previous_was_command = True
    return steps


def _without_remark(command: str) -> str:
    return "\n".join(re.sub(r"\s+#\s[^'\"]*$", "", line) for line in command.splitlines())


def _untranslated(command: str) -> str:
    """The command without what a translation rewords: trailing ``# ...`` remarks, placeholder names, the free
    text of a ``reason`` and of an ``echo``."""
    command = _PLACEHOLDER.sub("<>", _without_remark(command))
    return re.sub(r'((?:"reason": |echo )")[^"]*"', r'\1"', command)


def step(fragment: str) -> Step:
    """The one command of RUNBOOK.md that is, or else contains, ``fragment``; it must also be in RUNBOOK.en.md (up to
    the wording of remarks, placeholders and free text)."""
    steps = _steps(RUNBOOK)
    # A command that is exactly the fragment wins over longer ones containing it (`libervia --version` vs
    # `docker exec libervia-gateway libervia --version`); the same command may appear in several procedures.
    exact = [s for s in steps if _without_remark(s.command) == fragment]
    matches = exact or [s for s in steps if fragment in s.command]
    commands = {s.command for s in matches}
    assert len(commands) == 1, f"{len(commands)} runbook commands contain {fragment!r}: {sorted(commands)}"
    found = next((s for s in matches if s.expected), matches[0])
    english = {_untranslated(s.command) for s in _steps(RUNBOOK_EN)}
    assert _untranslated(found.command) in english, f"RUNBOOK.en.md lacks the command {found.command!r}"
    return found


def block(fragment: str) -> str:
    """The whole bash block of RUNBOOK.md containing ``fragment``: a procedure meant to be pasted at once."""
    matches = [b for b in _blocks(RUNBOOK) if fragment in b]
    assert len(matches) == 1, f"{len(matches)} runbook blocks contain {fragment!r}"
    return matches[0]


class Operator:
    """A shell on the gateway's host, with the environment the runbook assumes (ADMIN_TOKEN, BASE_DIR, PORT,
    LIBERVIA_AUTH_PEPPER as the gateway has them) and the installed ``libervia`` on PATH."""

    def __init__(self, gateway: GatewayProcess, **env: str) -> None:
        self.gateway = gateway
        self.env = dict(gateway.env)
        self.env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), self.env.get("PATH", "")))
        self.env["LOG_FILE"] = str(gateway.log_path)
        # An operator's terminal is narrow, and ps (among others) truncates to $COLUMNS: no runbook command may
        # depend on the width it happens to run at.
        self.env["COLUMNS"] = "80"
        self.env.update(env)

    def adapt(self, command: str, **placeholders: str) -> str:
        """The command as pasted on this host: port, log source and placeholders filled in."""
        command = command.replace("localhost:3000", "localhost:$PORT")
        command = _DOCKER_LOGS.sub('cat "$LOG_FILE"', command)
        for name, value in placeholders.items():
            command = command.replace(f"<{name.replace('_', '-')}>", value)
        left = _PLACEHOLDER.findall(command)
        assert not left, f"unfilled placeholders {left} in {command!r}"
        return command

    def run(self, command: str, *, timeout: float = 60, **placeholders: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.adapt(command, **placeholders)], env=self.env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, command: str, **placeholders: str) -> str:
        """Run the command, require exit status 0, and return its standard output."""
        result = self.run(command, **placeholders)
        assert result.returncode == 0, (f"exit {result.returncode}: {self.adapt(command, **placeholders)}\n"
                                        f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result.stdout
