"""Which asyncio event loop ``libervia serve`` runs on: uvloop where it is installed (the default), else the
standard one. The setting ``event_loop`` (``auto`` | ``uvloop`` | ``asyncio``; ``LIBERVIA_EVENT_LOOP``) turns it
off, or insists on uvloop and refuses to start without it.

uvloop runs the same aiohttp application with its transports and scheduling in C: on this project's benchmark
it removes a good part of the per-request socket and scheduling cost (see ``bench/table_bench.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from loguru import logger

from libervia.errors import StartupError

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``choice``; None means asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartupError(["event_loop: uvloop is not installed (pip install uvloop, or set event_loop "
                                "to auto or asyncio)"]) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    factory = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        logger.info("event loop: {}", "uvloop" if factory is not None else "asyncio")
        return runner.run(main)


def install_policy(choice: str) -> str:
    """Make the chosen loop this process's default (for servers that create their own loop, such as a gunicorn
    worker after the fork); the name of the loop in use."""
    factory = loop_factory(choice)
    if factory is None:
        return "asyncio"
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
