"""The hook reference (``docs/plugins/hooks.md``), generated from :mod:`libervia.hookspecs`.

Each spec's docstring is read in four parts: the summary, a ``Called:`` paragraph, an ``Args:`` block (one
``name: text`` entry per parameter) and a ``Returns:`` block; any paragraph after them is kept as notes. The
signature gives the types, pluggy's spec options give first-result, :data:`libervia.hookspecs.MAY_BE_AWAITABLE`
gives sync or awaitable. ``python -m libervia.hookdocs > docs/plugins/hooks.md`` regenerates the file; a test
keeps it equal to this output.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from libervia import PROJECT_NAME, hookspecs

_ENTRY = re.compile(r"^(\w+): (.*)$")
_ROLE = re.compile(r":(?:class|func|mod|data|meth):`~?([^`]+)`")


@dataclass
class HookDoc:
    name: str
    signature: str
    summary: str
    called: str
    params: dict[str, tuple[str, str]]          # name -> (type, meaning)
    returns: tuple[str, str]                    # (type, meaning)
    firstresult: bool
    awaitable: bool
    notes: list[str] = field(default_factory=list)


def spec_functions() -> Iterator[Callable[..., Any]]:
    """Every hook spec, in the order of the module's source."""
    members = [obj for name, obj in vars(hookspecs).items()
               if name.startswith(f"{PROJECT_NAME}_") and callable(obj) and hasattr(obj, f"{PROJECT_NAME}_spec")]
    yield from sorted(members, key=lambda function: inspect.getsourcelines(function)[1])


def _paragraphs(text: str) -> list[str]:
    return [part.strip("\n") for part in re.split(r"\n\s*\n", text) if part.strip()]


def _join(lines: list[str]) -> str:
    """One Markdown line: reST roles and double backquotes become plain code spans."""
    text = " ".join(line.strip() for line in lines if line.strip())
    return _ROLE.sub(r"`\1`", text).replace("``", "`")


def _entries(block: str) -> dict[str, str]:
    """``name: text`` entries of an ``Args:`` block; continuation lines are indented further."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in block.splitlines()[1:]:
        stripped = line.strip()
        match = _ENTRY.match(stripped)
        if match and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1)
            found[current] = [match.group(2)]
        elif current is not None and stripped:
            found[current].append(stripped)
    return {name: _join(lines) for name, lines in found.items()}


def describe(function: Callable[..., Any]) -> HookDoc:
    doc = inspect.getdoc(function) or ""
    paragraphs = _paragraphs(doc)
    summary: list[str] = []
    called, args_block, returns_text = "", "", ""
    notes: list[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith("Called:"):
            called = _join(paragraph[len("Called:"):].splitlines())
        elif paragraph.startswith("Args:"):
            args_block = paragraph
        elif paragraph.startswith("Returns:"):
            returns_text = _join(paragraph.splitlines()[1:])
        elif not called and not args_block and not returns_text:
            summary.append(_join(paragraph.splitlines()))
        else:
            notes.append(_join(paragraph.splitlines()))
    signature = inspect.signature(function)
    meanings = _entries(args_block) if args_block else {}
    params = {name: (str(parameter.annotation), meanings.get(name, ""))
              for name, parameter in signature.parameters.items()}
    opts = getattr(function, f"{PROJECT_NAME}_spec")
    rendered_signature = f"def {function.__name__}{signature}"
    return HookDoc(
        name=function.__name__, signature=rendered_signature.replace("'", ""), summary=" ".join(summary),
        called=called, params=params, returns=(str(signature.return_annotation), returns_text),
        firstresult=bool(opts.get("firstresult")), awaitable=function.__name__ in hookspecs.MAY_BE_AWAITABLE,
        notes=notes,
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(hook: HookDoc) -> str:
    calling = ("**first result**: implementations are asked in call order until one answers something other than "
               "None; that answer is the result" if hook.firstresult else
               "**every implementation** is called; the result is the list of their answers")
    kind = ("**may be awaitable**: an implementation may be `async def`; the host awaits each answer"
            if hook.awaitable else "**synchronous**: implement it as a plain function")
    lines = [f"## `{hook.name}`", "", "```python", hook.signature, "```", "", hook.summary, "",
             f"- **Called:** {hook.called}", f"- {calling}.", f"- {kind}.", ""]
    if hook.params:
        lines += ["| parameter | type | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | `{_cell(kind_)}` | {_cell(meaning)} |"
                  for name, (kind_, meaning) in hook.params.items()]
        lines.append("")
    else:
        lines += ["No parameters.", ""]
    lines += [f"**Returns** `{hook.returns[0]}`: {hook.returns[1]}", ""]
    for note in hook.notes:
        lines += [note, ""]
    return "\n".join(lines)


HEADER = """# Hook reference

Generated from `libervia/hookspecs.py` by `python -m libervia.hookdocs > docs/plugins/hooks.md`; do not edit by
hand (`tests/kit/test_hook_reference.py` fails when the two differ). How to write, order, configure, test and
publish a plugin: [guide.md](guide.md).

Every hook receives keyword arguments only; an implementation may accept any subset of the parameters listed.
Wrappers (`@hookimpl(wrapper=True)`) work on every hook; on awaitable hooks they receive the awaited result.

"""


def reference() -> str:
    hooks = [describe(function) for function in spec_functions()]
    index = "".join(f"- [`{hook.name}`](#{hook.name}){' (first result)' if hook.firstresult else ''}\n"
                    for hook in hooks)
    return HEADER + index + "\n" + "\n".join(render(hook) for hook in hooks).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(reference(), end="")
