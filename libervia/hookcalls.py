"""Calling hooks whose implementations may return awaitables (datasette's ``await_me_maybe``).

pluggy itself is synchronous: called directly, a ``firstresult`` hook would stop at the first coroutine object
(never ``None``), and a wrapper would see coroutines instead of answers. The host therefore runs the hooks that
may be awaitable itself, with pluggy's own semantics:

* implementations in pluggy's call order (``tryfirst`` first, ``trylast`` last, otherwise last registered
  first), each answer awaited before deciding whether to ask the next, so an ``async def`` implementation that
  returns ``None`` still means "not mine";
* wrappers (``@hookimpl(wrapper=True)`` and old-style ``hookwrapper=True``) run around the whole call: the code
  before their ``yield`` runs before any implementation, the ``yield`` returns the *awaited* result (or raises
  the exception), and what a new-style wrapper returns becomes the result;
* every such call is reported to the plugin manager's tracer (:mod:`libervia.plugin_trace`), like the hooks
  pluggy calls itself.

A hook asked on every request (``libervia_authenticate``) goes through a :class:`FirstResultCall`, which sorts the
implementations once instead of on every call, and asks them again only when the registered set changes (a plugin
registered or unregistered later). A built-in and a third-party implementation are called the same way; with a
wrapper registered or tracing on, the call takes the general path above.
"""

from __future__ import annotations

import functools
import inspect
import operator
import time
import types
from collections.abc import Callable, Generator
from typing import Any

from pluggy import HookCaller, HookImpl, Result

from libervia import plugin_trace


async def await_me_maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def call_all(hook: HookCaller, **kwargs: Any) -> list[Any]:
    """Every implementation's result (awaited), in pluggy's call order, ``None`` results dropped."""
    result = await _run(hook, kwargs, firstresult=False)
    return list(result or [])


async def call_each(hook: HookCaller, **kwargs: Any) -> list[tuple[str, Exception]]:
    """Call every implementation (awaited) in pluggy's call order, each even when an earlier one raised; the
    plugins that raised, with what they raised. For notifications every plugin must get (a tenant purged): with
    :func:`call_all` the first failure would keep the rest from hearing of it.

    Wrappers and the tracer see the call as :func:`call_all` would show it: the wrapper's ``yield`` raises the
    first failure (or returns the results), and the trace names every implementation called. A failure stays
    reported even when a wrapper swallows it, since the plugin that raised still did not hear; what a wrapper
    raises itself is reported under the hook's name."""
    failures: list[tuple[str, Exception]] = []
    await _run(hook, kwargs, firstresult=False, failures=failures)
    return failures


async def call_first(hook: HookCaller, **kwargs: Any) -> Any:
    """The first non-None result, asking implementations one at a time in pluggy's call order."""
    return await _run(hook, kwargs, firstresult=True)


class FirstResultCall:
    """``call_first(hook, ...)`` for a hook called on every request, in the same order and with the same answers.

    What ``call_first`` works out on each call (the implementations in call order, which are wrappers, which
    arguments each takes) is kept from the last call and worked out again only when the list of registered
    implementations is another one.
    """

    __slots__ = ("_hook", "_impls", "_plain")

    def __init__(self, hook: HookCaller) -> None:
        self._hook = hook
        self._impls: list[HookImpl] | None = None
        # (function, its arguments picked from the call's keyword arguments, whether it is an async def);
        # None when a wrapper is registered or the calls are traced: such calls take the general path. (Tracing
        # is switched on when the plugins are loaded, before anything calls a hook.)
        self._plain: list[tuple[Callable[..., Any], Callable[[dict[str, Any]], tuple[Any, ...]], bool]] | None = None

    def _prepare(self, impls: list[HookImpl]) -> None:
        self._impls = impls
        if plugin_trace.tracer_of(self._hook) is not None or any(impl.wrapper or impl.hookwrapper for impl in impls):
            self._plain = None
            return
        self._plain = [(impl.function, _picker(impl.argnames), inspect.iscoroutinefunction(impl.function))
                       for impl in reversed(impls)]

    async def __call__(self, **kwargs: Any) -> Any:
        hook = self._hook
        impls = hook.get_hookimpls()
        if impls != self._impls:
            self._prepare(impls)
        plain = self._plain
        if plain is None:
            return await _run(hook, kwargs, firstresult=True)
        for function, arguments, is_async in plain:
            value = function(*arguments(kwargs))
            if is_async or (value is not None and _awaitable(value)):
                value = await value
            if value is not None:
                return value
        return None


# Types whose instances inspect.isawaitable refused: a sync implementation answers with the same few types
# (a Principal, a tuple...) on every call, and the ABC check behind isawaitable is the slow part. Generators
# are never kept: whether one is awaitable depends on its code, not on its type.
_not_awaitable: set[type] = set()


def _awaitable(value: Any) -> bool:
    kind = type(value)
    if kind in _not_awaitable:
        return False
    if inspect.isawaitable(value):
        return True
    if kind is not types.GeneratorType and len(_not_awaitable) < 256:
        _not_awaitable.add(kind)
    return False


@functools.lru_cache(maxsize=1024)
def _picker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function taking the values of ``names`` from a dict, as a tuple (KeyError for a missing one). One per
    list of names: hook implementations share a few."""
    if not names:
        return lambda kwargs: ()
    if len(names) == 1:
        name = names[0]
        return lambda kwargs: (kwargs[name],)
    getter = operator.itemgetter(*names)
    return getter  # itemgetter of 2+ names returns a tuple


def _arguments(impl: HookImpl, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The call's arguments that ``impl`` takes, in its order."""
    return _picker(impl.argnames)(kwargs)


async def _run(hook: HookCaller, kwargs: dict[str, Any], *, firstresult: bool,
               failures: list[tuple[str, Exception]] | None = None) -> Any:
    """One hook call with pluggy's semantics (see the module). With ``failures``, an implementation that raises
    is recorded there and the next one is still called; the call then raises nothing."""
    tracer = plugin_trace.tracer_of(hook)
    started = time.perf_counter() if tracer is not None else 0.0
    wrappers: list[HookImpl] = []
    plain: list[HookImpl] = []
    for impl in reversed(hook.get_hookimpls()):   # pluggy's call order: wrappers first, then the others
        (wrappers if impl.wrapper or impl.hookwrapper else plain).append(impl)
    called: list[HookImpl] = []
    teardowns: list[tuple[HookImpl, Generator[Any, Any, Any]]] = []
    result: Any = None
    error: BaseException | None = None
    try:
        for impl in wrappers:
            generator: Generator[Any, Any, Any] = impl.function(*_arguments(impl, kwargs))  # type: ignore[assignment]
            called.append(impl)
            next(generator)   # the wrapper's code before its ``yield``
            teardowns.append((impl, generator))
        results: list[Any] = []
        for impl in plain:
            called.append(impl)
            try:
                value = await await_me_maybe(impl.function(*_arguments(impl, kwargs)))
            except Exception as exc:
                if failures is None:
                    raise
                failures.append((impl.plugin_name, exc))
                error = error or exc
                continue
            if value is not None:
                results.append(value)
                if firstresult:
                    break
        result = (results[0] if results else None) if firstresult else results
    except BaseException as exc:
        error = exc
    if teardowns:
        result, error = _teardown(teardowns, result, error)
    if tracer is not None:
        tracer.record(hook.name, called, kwargs, result, error, time.perf_counter() - started)
    if error is not None and failures is not None and isinstance(error, Exception):
        if all(error is not failed for _, failed in failures):
            failures.append((hook.name, error))
        return None
    if error is not None:
        raise error
    return result


def _teardown(teardowns: list[tuple[HookImpl, Generator[Any, Any, Any]]], result: Any,
              error: BaseException | None) -> tuple[Any, BaseException | None]:
    """Resume each wrapper after its ``yield``, innermost first, the way pluggy's ``_multicall`` does."""
    for impl, generator in reversed(teardowns):
        outcome: Result[Any] | None = Result(result, error) if impl.hookwrapper else None
        try:
            if outcome is not None:
                generator.send(outcome)      # old style: the wrapper reads (or forces) the outcome
            elif error is not None:
                generator.throw(error)
            else:
                generator.send(result)
        except StopIteration as stop:
            if outcome is not None:
                result, error = outcome._result, outcome._exception
            else:
                result, error = stop.value, None
            continue
        except BaseException as exc:
            result, error = None, exc
            continue
        generator.close()
        result, error = None, RuntimeError(f"hook wrapper {impl.plugin_name!r} of {impl.function.__name__} did "
                                           "not stop after its only yield")
    return result, error
