"""``LIBERVIA_TRACE_PLUGINS=1``: one JSON log line per hook call.

Each line names the hook, the implementations that ran in call order (``plugin:function``, wrappers marked),
what came back (``none``, a type name, ``list[n]``, ``error:ExceptionType``), the time taken and the arguments
(values of secret-named arguments such as ``token`` replaced by ``***``; objects only by type).

Hooks pluggy calls itself are seen through pluggy's ``add_hookcall_monitoring``; the hooks the host runs itself
because they may be awaitable (:mod:`libervia.hookcalls`) report to the same tracer after the awaited answer, so
their line carries the real result and the real time.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import pluggy
from loguru import logger

from libervia.settings import is_secret_key

TRACE_ENV = "LIBERVIA_TRACE_PLUGINS"
_TRUE = {"1", "true", "yes", "on"}
_SCALARS = (str, int, float, bool)
_MAX_SHOWN = 80

_TRACERS: weakref.WeakKeyDictionary[pluggy.PluginManager, HookTracer] = weakref.WeakKeyDictionary()


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(TRACE_ENV, "")
    return value.strip().lower() in _TRUE


def implementation_label(impl: pluggy.HookImpl) -> str:
    kind = " (wrapper)" if impl.wrapper or impl.hookwrapper else ""
    return f"{impl.plugin_name}:{impl.function.__name__}{kind}"


def result_kind(result: Any, error: BaseException | None) -> str:
    if error is not None:
        return f"error:{type(error).__name__}"
    if result is None:
        return "none"
    if isinstance(result, list):
        return f"list[{len(result)}]"
    return type(result).__name__


def describe_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Short, secret-free values: scalars as they are (secret names masked), anything else by type name."""
    shown: dict[str, Any] = {}
    for name, value in kwargs.items():
        if is_secret_key(name):
            shown[name] = "***"
        elif isinstance(value, _SCALARS) and len(str(value)) <= _MAX_SHOWN:
            shown[name] = value
        elif isinstance(value, Mapping) and all(isinstance(v, _SCALARS) for v in value.values()):
            shown[name] = {str(k): ("***" if is_secret_key(str(k)) else v) for k, v in value.items()}
        else:
            shown[name] = type(value).__name__
    return shown


class HookTracer:
    """Writes the trace lines of one plugin manager."""

    def __init__(self) -> None:
        self._started: list[float] = []

    def install(self, pm: pluggy.PluginManager) -> None:
        pm.add_hookcall_monitoring(self._before, self._after)
        _TRACERS[pm] = self

    def _before(self, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        self._started.append(time.perf_counter())

    def _after(self, outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl],
               kwargs: Mapping[str, Any]) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        error = outcome.exception
        result = None if error is not None else outcome.get_result()
        # pluggy hands the implementations in registration order and calls them in the reverse order.
        self.record(hook_name, list(reversed(impls)), kwargs, result, error, elapsed)

    def record(self, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any], result: Any,
               error: BaseException | None, seconds: float) -> None:
        logger.bind(
            hook=hook_name,
            implementations=[implementation_label(impl) for impl in impls],
            result=result_kind(result, error),
            durationMs=round(seconds * 1000, 3),
            args=describe_arguments(kwargs),
        ).info(f"plugin hook {hook_name}")


def install_if_wanted(pm: pluggy.PluginManager, environ: Mapping[str, str] | None = None) -> HookTracer | None:
    if not wanted(environ):
        return None
    tracer = HookTracer()
    tracer.install(pm)
    return tracer


def tracer_of(hook: pluggy.HookCaller) -> HookTracer | None:
    """The tracer of the plugin manager that owns ``hook``, if tracing is on."""
    if not _TRACERS:
        return None
    owner = getattr(getattr(hook, "_hookexec", None), "__self__", None)
    return _TRACERS.get(owner) if isinstance(owner, pluggy.PluginManager) else None
