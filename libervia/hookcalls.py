"""Calling hooks whose implementations may return awaitables (datasette's ``await_me_maybe``).

pluggy itself is synchronous. For ``firstresult`` hooks :func:`call_first` asks each implementation in pluggy's
call order and awaits its answer before deciding whether to ask the next, so an ``async def`` implementation
that returns ``None`` still means "not mine".
"""

from __future__ import annotations

import inspect
from typing import Any

from pluggy import HookCaller


async def await_me_maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def call_all(hook: HookCaller, **kwargs: Any) -> list[Any]:
    """Every implementation's result (awaited), in pluggy's call order, ``None`` results dropped."""
    results = []
    for value in hook(**kwargs):
        resolved = await await_me_maybe(value)
        if resolved is not None:
            results.append(resolved)
    return results


async def call_first(hook: HookCaller, **kwargs: Any) -> Any:
    """The first non-None result, asking implementations one at a time (last registered first)."""
    for impl in reversed(hook.get_hookimpls()):
        args = [kwargs[name] for name in impl.argnames]
        result = await await_me_maybe(impl.function(*args))
        if result is not None:
            return result
    return None

