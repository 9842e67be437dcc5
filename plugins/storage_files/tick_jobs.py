"""One I/O-thread job per event-loop tick for the group writes of every tenant log.

Each tenant log flushes its own group (its own lock, write and fsync), but handing each group to the thread pool
on its own costs a wake-up of an I/O thread, a ``concurrent.futures`` future and a cross-thread callback per group.
With many tenants each written by one client (so each group holds one command) that hand-off was most of what a
command cost beyond its own work. Groups queued during the same tick of the loop (about five under 16 clients over
16 tenants) now go to the pool as one job that writes them one after another, each under its own log's locks as
before, and answers each as it is durable. A job of the next tick runs in another thread meanwhile, so logs still
write in parallel once one thread has work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

Job = tuple[Callable[[Any], Any], Any, asyncio.Future[Any]]


class TickJobs:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._pending: dict[asyncio.AbstractEventLoop, list[Job]] = {}

    def run(self, func: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        """``func(arg)`` in an I/O thread, together with the other calls made during this tick."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._dispatch, loop)
        pending.append((func, arg, future))
        return future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, [])
        if not jobs:
            return
        try:
            self._executor.submit(self._run_all, loop, jobs)
        except RuntimeError as exc:  # the pool was shut down: nothing is written
            for _, _, future in jobs:
                if not future.done():
                    future.set_exception(exc)

    @staticmethod
    def _run_all(loop: asyncio.AbstractEventLoop, jobs: list[Job]) -> None:
        for func, arg, future in jobs:
            try:
                outcome: tuple[bool, Any] = (True, func(arg))
            except BaseException as exc:  # handed to the caller, as run_in_executor would
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:  # the loop is closed: nobody waits for the answer any more
                return


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the waiter was cancelled
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
