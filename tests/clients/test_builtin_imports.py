"""No built-in plugin imports another built-in plugin (what they share lives in the host, ``libervia``)."""

from __future__ import annotations

import ast

from tests.gateway_process import REPO_ROOT

# Issue 12 moves the GCRA out of ratelimit_memory into the host (libervia/ratelimit.py); empty this once merged.
PENDING = {"ratelimit_redis.py: libervia_plugins.ratelimit_memory"}


def test_builtin_plugins_import_no_other_builtin() -> None:
    offenders = []
    for path in (REPO_ROOT / "plugins").rglob("*.py"):
        relative = path.relative_to(REPO_ROOT / "plugins")
        own = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "libervia_plugins" and len(parts) > 1 and parts[1] != own:
                    offenders.append(f"{relative}: {name}")
    assert set(offenders) <= PENDING, offenders
