"""10.12-10.14: what the product ships works with the runbook and with itself.

12: the runbook runs plain ``docker-compose`` commands naming the service ``gateway`` and the container
``libervia-gateway`` (the compose file lived in contrib/ with the service named ``libervia-gateway``).
13: no variable the product ships collides with its own ``LIBERVIA_*`` settings namespace (``LIBERVIA_TAG`` made
``libervia check`` fail), and an unknown setting names the closest known one.
14: every third-party module the host and plugins import is declared in pyproject (orjson was not).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

from tests.gateway_process import REPO_ROOT, base_env

RUNBOOK = Path("/work/shared/seeds/runbook_operacional.md")


def test_the_runbooks_compose_commands_find_the_gateway_service() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    assert gateway["container_name"] == "libervia-gateway"
    assert (REPO_ROOT / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    for env_file in gateway["env_file"]:
        assert (REPO_ROOT / env_file).with_name("libervia.env.example").is_file()
    if RUNBOOK.is_file():  # the commands as the runbook writes them
        text = RUNBOOK.read_text()
        for service in re.findall(r"docker-compose (?:restart|stop|logs[^\n]*?) (\w[\w-]*)\s*$", text, re.M):
            assert service in compose["services"] or service.startswith("-"), service
        assert "docker logs libervia-gateway" in text


def _shipped_variable_names() -> set[str]:
    names: set[str] = set()
    roots = [REPO_ROOT / "contrib", REPO_ROOT / "docs", REPO_ROOT / "scripts", REPO_ROOT / "libervia",
             REPO_ROOT / "plugins", REPO_ROOT / ".ci"]
    files = [REPO_ROOT / name for name in ("docker-compose.yml", "Makefile", "settings.toml", "README.md",
                                           "tests/conftest.py")]
    for root in roots:
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".pyc", ".png", ".json")]
    for path in files:
        if path.is_file():
            names |= set(re.findall(r"\bLIBERVIA_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    return names


def test_no_shipped_variable_collides_with_the_settings_namespace(tmp_path: Path) -> None:
    from libervia.errors import StartupError
    from libervia.settings import load_settings

    colliding = []
    for name in sorted(_shipped_variable_names()):
        if name.endswith("__") or name in ("LIBERVIA_AUTH_PEPPER", "LIBERVIA_ENV", "LIBERVIA_SETTINGS_FILE",
                                           "LIBERVIA_SETTINGS"):
            continue
        env = base_env(tmp_path / "data", 3000)
        env[name] = '"x"'
        try:
            load_settings(env)
        except StartupError as exc:
            if any("unknown setting" in problem for problem in exc.problems):
                colliding.append(name)
    assert colliding == [], f"variables the product ships that its own settings refuse: {colliding}"


def test_an_unknown_setting_names_the_closest_known_one(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", 3000)
    env["LIBERVIA_LOG_LEVL"] = "debug"
    env["LIBERVIA_AUTH__MAX_FAILURE"] = "3"
    result = subprocess.run([sys.executable, "-m", "libervia", "check"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "log_levl: unknown setting (did you mean log_level, variable LIBERVIA_LOG_LEVEL?)" in output
    assert "auth.max_failure: unknown setting (did you mean auth.max_failures, variable " \
           "LIBERVIA_AUTH__MAX_FAILURES?)" in output


def _imported_top_level_modules(folders: tuple[str, ...], exclude: Path | None = None) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if exclude is not None and path.is_relative_to(exclude):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in requirements}


def _undeclared(modules: set[str], declared: set[str]) -> list[str]:
    distributions = packages_distributions()
    # _typeshed exists only for type checkers (imported under TYPE_CHECKING)
    ours = {"libervia", "libervia_plugins", "libervia_schemas", "_typeshed"}
    missing = []
    for module in sorted(modules - ours - set(sys.stdlib_module_names)):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & declared:
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    return missing


def test_every_imported_distribution_is_declared() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    kit = REPO_ROOT / "libervia" / "testing"
    missing = _undeclared(_imported_top_level_modules(("libervia", "plugins"), exclude=kit), runtime)
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"
    # The plugin authors' kit runs inside their pytest: its own needs are the `testing` extra.
    testing = runtime | _names(project["optional-dependencies"]["testing"])
    missing = _undeclared(_imported_top_level_modules(("libervia/testing",)), testing)
    assert missing == [], f"imported by libervia.testing but not in the testing extra: {missing}"
