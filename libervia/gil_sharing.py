"""How soon the interpreter lets the event loop's thread back in while worker threads run Python.

Large and refused request bodies are parsed and validated in worker threads (:mod:`libervia.pipeline.validation`),
in pure Python. CPython hands its lock from thread to thread every ``sys.getswitchinterval()`` seconds, 5 ms by
default, and the event loop's thread waits up to that long each time it wants the lock back after a system call.
With the two validation threads busy, a ``/health`` that needs a few such returns was answered after the hostile
bodies it must not wait for, in about one run in six of ``tests/host/test_hostile_bodies.py`` (none in 15 at
1 ms). Durable decisions and key-authenticated reads measured the same at 1 ms (``bench/table_bench.py``).
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.001


def configure_for_serving() -> None:
    """Hand the interpreter between threads every :data:`SWITCH_INTERVAL_S`."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
