"""One surface for plugins: the host imports no plugin module, and no built-in plugin imports another one.

Read from the source (every ``import`` and ``from ... import`` statement, relative ones resolved), so a lazy
import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = REPO_ROOT / "libervia"
BUILTINS = REPO_ROOT / "plugins"
PLUGIN_PACKAGE = "libervia_plugins"


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imported_modules(path: Path, root: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` counts ``a`` and ``a.b``)."""
    name = module_name(path, root, package)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def builtin_of(module: str) -> str | None:
    """The built-in plugin a ``libervia_plugins`` module belongs to (its first component below the package)."""
    parts = module.split(".")
    if parts[0] != PLUGIN_PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def test_the_host_imports_no_plugin_module() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(m for m in imported_modules(path, HOST, "libervia")
                                                 if m == PLUGIN_PACKAGE or m.startswith(PLUGIN_PACKAGE + "."))
        for path in sorted(HOST.rglob("*.py"))
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_no_builtin_plugin_imports_another() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(BUILTINS.rglob("*.py")):
        own = builtin_of(module_name(path, BUILTINS, PLUGIN_PACKAGE))
        others = sorted({m for m in imported_modules(path, BUILTINS, PLUGIN_PACKAGE)
                         if builtin_of(m) not in (None, own)})
        if others:
            offenders[str(path.relative_to(REPO_ROOT))] = others
    assert offenders == {}


def test_the_reader_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "__init__.py").write_text("from .. import sibling\n")
    (package / "sub" / "mod.py").write_text("def f():\n    from ..other import thing\n    import x.y\n")
    assert imported_modules(package / "sub" / "__init__.py", package, "pkg") >= {"pkg.sibling"}
    assert imported_modules(package / "sub" / "mod.py", package, "pkg") >= {"pkg.other.thing", "x.y"}
    assert builtin_of("libervia_plugins.core_api") == "core_api"
    assert builtin_of("libervia_plugins") is None
