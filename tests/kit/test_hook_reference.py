"""``docs/plugins/hooks.md`` is generated from ``hookspecs.py``, and every hook is documented completely."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from libervia import hookspecs
from libervia.hookdocs import describe, reference, spec_functions
from libervia.plugin_manager import new_plugin_manager

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "hooks.md"
HOOKS = list(spec_functions())
POLICY_HOOKS = ("libervia_closed_layer_rules", "libervia_autonomy_policy", "libervia_consequence_policy")


def test_the_reference_is_current() -> None:
    assert REFERENCE.read_text("utf-8") == reference(), \
        "regenerate it: python -m libervia.hookdocs > docs/plugins/hooks.md"


def test_every_registered_spec_is_in_the_reference() -> None:
    pm = new_plugin_manager()
    registered = {name for name in vars(pm.hook) if name.startswith("libervia_")}
    assert {function.__name__ for function in HOOKS} == registered
    for name in registered:
        assert f"## `{name}`" in REFERENCE.read_text("utf-8")


@pytest.mark.parametrize("function", HOOKS, ids=lambda function: function.__name__)
def test_every_hook_says_when_what_and_what_it_returns(function: object) -> None:
    hook = describe(function)  # type: ignore[arg-type]
    assert hook.summary and hook.called and hook.returns[1]
    for name, (kind, meaning) in hook.params.items():
        assert kind != str(inspect.Parameter.empty), f"{hook.name}: {name} has no type"
        assert meaning, f"{hook.name}: parameter {name} is not documented under Args:"
    assert hook.returns[0] != str(inspect.Signature.empty)


@pytest.mark.parametrize("name", POLICY_HOOKS)
def test_policy_hooks_are_typed_without_any(name: str) -> None:
    hook = describe(getattr(hookspecs, name))
    assert "Any" not in hook.returns[0] and all("Any" not in kind for kind, _ in hook.params.values())


def test_awaitable_hooks_exist() -> None:
    assert hookspecs.MAY_BE_AWAITABLE <= {function.__name__ for function in HOOKS}


CALL_HELPERS = ("call_first", "call_all", "call_each", "FirstResultCall")   # libervia.hookcalls


def _hook_calls() -> tuple[set[str], set[str]]:
    """Hooks the host and built-ins run through libervia.hookcalls, and hooks they call through pluggy directly."""
    import ast

    root = REFERENCE.parents[2]
    awaited, direct = set(), set()
    for path in [*(root / "libervia").rglob("*.py"), *(root / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in CALL_HELPERS and node.args:
                target = node.args[0]
                if isinstance(target, ast.Attribute) and target.attr.startswith("libervia_"):
                    awaited.add(target.attr)
            elif isinstance(func, ast.Attribute) and func.attr.startswith("libervia_") \
                    and isinstance(func.value, ast.Attribute) and func.value.attr == "hook":
                direct.add(func.attr)
    return awaited, direct


def test_awaitable_hooks_are_the_ones_the_host_awaits() -> None:
    awaited, direct = _hook_calls()
    assert awaited == hookspecs.MAY_BE_AWAITABLE
    # a hook documented as synchronous is called by pluggy itself, and never also awaited
    assert not direct & hookspecs.MAY_BE_AWAITABLE
