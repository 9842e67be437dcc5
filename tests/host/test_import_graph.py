"""The host's modules form no import cycle, counting every import (``TYPE_CHECKING`` and function-local ones
too): read from the source, so nothing has to run. (That the host imports no plugin module is
``tests/test_import_boundaries.py``.)"""

from __future__ import annotations

import ast
from pathlib import Path

import libervia

ROOT = Path(libervia.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Host modules ``path`` imports; ``from libervia.x import y`` counts ``libervia.x.y`` when that is a module."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ importing its own submodules is how packages re-export; that edge is not a cycle.
    return {name: {dep for dep in _imports(path, modules) if dep != name and not dep.startswith(name + ".")}
            for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_host_has_no_import_cycle() -> None:
    graph = _graph()
    assert "libervia.runtime" in graph and "libervia.gateway" in graph  # the reader sees the modules it checks
    assert _cycles(graph) == []


def test_the_cycle_reader_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
