"""The Core's commands: each validates its input against the current state and returns the events to append.

A command never touches the state. It returns an :class:`Outcome`: the drafts of every event it produces (the
Core appends them in one atomic, durable append and folds the stored entries into the projection), a function
that builds the response from the new state, and optionally the error to raise once those events are durable
(a protocol rejection or a closed-layer block is recorded before it is reported). A command whose input is
invalid raises before producing anything, so it writes nothing.
"""

from __future__ import annotations

from libervia.core.autonomy_commands import AutonomyCommands
from libervia.core.command_kit import COMMANDS, CommandMethod, Outcome, command
from libervia.core.decision_commands import DecisionCommands

__all__ = ["COMMANDS", "CommandMethod", "Commands", "Outcome", "command"]


class Commands(DecisionCommands, AutonomyCommands):
    """The command handlers of one tenant's Core, reading ``state`` and the tenant's ``policies``.

    The decision flow is in :mod:`libervia.core.decision_commands`, autonomy and review cases in
    :mod:`libervia.core.autonomy_commands`; a new command is one ``@command`` method in one of them (or in a
    module of its own mixed in here), one route entry and one request schema.
    """
