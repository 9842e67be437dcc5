"""Holding a method that runs in a worker thread at its start, so that a test acts while the call is under way."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class HeldCall:
    """``entered`` is set once a call has started (and waits); setting ``release`` lets it go on."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


def hold(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, *, fail_with: Exception | None = None,
         first_only: bool = False) -> HeldCall:
    """Make ``owner.name`` wait, once entered, until released (for at most 10 s), then run as before, or raise
    ``fail_with`` instead. With ``first_only``, later calls run as before at once."""
    held = HeldCall()
    real = getattr(owner, name)

    def held_call(*args: Any, **kwargs: Any) -> Any:
        if first_only and held.entered.is_set():
            return real(*args, **kwargs)
        held.entered.set()
        held.release.wait(10)
        if fail_with is not None:
            raise fail_with
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, held_call)
    return held
