"""What every Core command is built from: the command registry, the outcome a command returns, the batch that
stamps its events, the lookups every command shares, and small input helpers.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libervia.core.model import (
    Entity,
    Episode,
    EventType,
    Mandate,
    ReviewCase,
    ReviewStatus,
    new_id,
)
from libervia.core.policy import (
    TenantPolicies,
)
from libervia.core.projection import CoreState
from libervia.errors import ApiError, invalid_state, not_found
from libervia.storage import EventDraft

Respond = Callable[[CoreState], dict[str, Any]]
E = TypeVar("E", bound=enum.Enum)
CommandMethod = Callable[..., "Outcome"]

# Every command, by name: the one list that ``TenantCore`` runs commands from (``core.decide(...)``) and that
# routes name commands by (``Commands.decide``). A command is a method of :class:`Commands` marked ``@command``,
# taking its inputs and then ``actor``, ``request_id`` and ``now`` by keyword.
COMMANDS: dict[str, CommandMethod] = {}


def command(method: CommandMethod) -> CommandMethod:
    COMMANDS[method.__name__] = method
    return method


@dataclass(slots=True)
class Outcome:
    drafts: list[EventDraft]
    respond: Respond
    error: ApiError | None = None   # raised after the drafts are durable: a rejection that is itself recorded


@dataclass(slots=True)
class Batch:
    """Collects a command's drafts, stamping each with the acting key and the request id."""

    actor: str | None
    request_id: str | None
    drafts: list[EventDraft] = field(default_factory=list)

    def add(self, evento: EventType, entidade: Entity, entidade_id: str, payload: dict[str, Any],
            *, actor: str | None = None) -> None:
        self.drafts.append(EventDraft(evento=evento.value, entidade=entidade.value, entidade_id=entidade_id,
                                      payload=payload, actor=actor or self.actor, request_id=self.request_id))


def blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def as_list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def normalise(text: str) -> str:
    """Evidence labels are compared the way a person reads them: case, accents' encoding and spacing aside."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())



def check_transition(table: Mapping[E, frozenset[E]], old: E, new: E, what: str) -> None:
    """Every state change a command records goes through its model's transition table."""
    if new not in table[old]:
        raise invalid_state(f"{what} is {old}; it cannot move to {new}.", details={"estado": old, "para": new})


def enum_or_none(kind: type[E], value: Any) -> E | None:
    try:
        return kind(value)
    except (ValueError, TypeError):
        return None


class CommandBase:
    """The state and policies a command reads, and the lookups commands of every kind share."""

    def __init__(self, tenant_id: str, state: CoreState, policies: TenantPolicies) -> None:
        self.tenant_id = tenant_id
        self.state = state
        self.policies = policies

    def episode(self, episodio_id: str) -> Episode:
        episode = self.state.episodios.get(episodio_id)
        if episode is None:
            raise not_found("EPISODE_NOT_FOUND", f"Episode {episodio_id} does not exist.")
        return episode

    def latest_mandate(self, agent_id: str) -> Mandate | None:
        """The agent's most recent mandate of any status (so a suspended agent is reported as suspended)."""
        ids = self.state.agent_mandates.get(agent_id)
        return self.state.mandates[ids[-1]] if ids else None

    def mandate(self, mandate_id: str) -> Mandate:
        mandate = self.state.mandates.get(mandate_id)
        if mandate is None:
            raise not_found("MANDATE_NOT_FOUND", f"Mandate {mandate_id} does not exist.")
        return mandate

    def review(self, review_id: str) -> ReviewCase:
        review = self.state.reviews.get(review_id)
        if review is None:
            raise not_found("REVIEW_NOT_FOUND", f"Review case {review_id} does not exist.")
        return review

    def _open_review(self, batch: Batch, obs_id: str, mandate: Mandate | None, motivo: str, regra: str | None,
                     at: str, actor: str | None) -> str:
        rev_id = new_id("rev")
        review = ReviewCase(id=rev_id, consequencia_id=obs_id, mandate_id=mandate.id if mandate else None,
                            agent_id=mandate.agent_id if mandate else None, motivo=motivo, regra=regra,
                            status=ReviewStatus.OPEN, opened_at=at, opened_by=actor)
        if mandate is not None:
            batch.add(EventType.AUTONOMY_HUMAN_REVIEW_FLAGGED, Entity.MANDATE, mandate.id,
                      {"mandate_id": mandate.id, "consequencia_id": obs_id, "review_id": rev_id, "em": at},
                      actor=actor)
        batch.add(EventType.HUMAN_REVIEW_CASE_OPENED, Entity.REVIEW, rev_id, {"review": review}, actor=actor)
        return rev_id
