"""The tenant's state as a fold over its event log.

:meth:`Projection.apply` takes one stored entry (``seq, id, ts, evento, entidade, entidade_id, actor, payload``)
and updates the state; nothing else ever changes it. Each event's payload carries everything needed here, so the
same log always gives the same state, and :meth:`Projection.to_bytes` / :meth:`Projection.from_bytes` round-trip
it for snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from libervia.core.model import (
    EPISODE_STAMP,
    AutonomyMode,
    Consequence,
    Contract,
    Decision,
    DecisionProtocol,
    Episode,
    EpisodeState,
    EventType,
    Mandate,
    MandateStatus,
    ReviewCase,
    ReviewStatus,
    Situation,
    SituationStatus,
    load_record,
)
from libervia.core.model import Resolution as _Resolution
from libervia.storage import CorruptStoreError

RECENT_EVENTS = 10
SNAPSHOT_FORMAT = 1


@dataclass(slots=True)
class CoreState:
    seq: int = 0
    head_hash: str | None = None
    last_event_at: str | None = None
    situacoes: dict[str, Situation] = field(default_factory=dict)
    episodios: dict[str, Episode] = field(default_factory=dict)
    protocolos: dict[str, DecisionProtocol] = field(default_factory=dict)
    decisoes: dict[str, Decision] = field(default_factory=dict)
    contratos: dict[str, Contract] = field(default_factory=dict)
    consequencias: dict[str, Consequence] = field(default_factory=dict)
    mandates: dict[str, Mandate] = field(default_factory=dict)
    reviews: dict[str, ReviewCase] = field(default_factory=dict)
    agent_mandates: dict[str, list[str]] = field(default_factory=dict)     # agentId -> mandate ids, oldest first
    open_review_by_consequence: dict[str, str] = field(default_factory=dict)
    event_counts: dict[str, int] = field(default_factory=dict)
    recent_events: list[dict[str, Any]] = field(default_factory=list)      # newest last


_RECORD_MAPS: dict[str, type] = {
    "situacoes": Situation, "episodios": Episode, "protocolos": DecisionProtocol, "decisoes": Decision,
    "contratos": Contract, "consequencias": Consequence, "mandates": Mandate, "reviews": ReviewCase,
}


def event_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """The short form of an entry used by event listings and the dashboard."""
    return {"id": entry.get("id"), "seq": entry["seq"], "evento": entry["evento"], "entidade": entry.get("entidade"),
            "entidade_id": entry.get("entidade_id"), "timestamp": entry.get("ts"), "actor": entry.get("actor")}


class Projection:
    def __init__(self, state: CoreState | None = None) -> None:
        self.state = state or CoreState()
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
            EventType.SITUACAO_CRIADA: self._situation_created,
            EventType.SITUACAO_STATUS_ALTERADO: self._situation_status_changed,
            EventType.EPISODIO_CRIADO: self._episode_created,
            EventType.EPISODIO_ESTADO_ALTERADO: self._episode_state_changed,
            EventType.PROTOCOLO_VALIDADO: self._protocol,
            EventType.PROTOCOLO_REJEITADO: self._protocol,
            EventType.CLOSED_LAYER_BLOQUEOU: self._closed_layer,
            EventType.DECISAO_REGISTRADA: self._decision,
            EventType.CONTRATO_EMITIDO: self._contract,
            EventType.CONSEQUENCIA_REGISTRADA: self._consequence,
            EventType.AUTONOMY_GRANTED: self._mandate_granted,
            EventType.AUTONOMY_REVOKED: self._mandate_ended,
            EventType.AUTONOMY_REVOKED_BY_CONSEQUENCE: self._mandate_ended,
            EventType.AUTONOMY_EXPIRED: self._mandate_ended,
            EventType.AUTONOMY_SUSPENDED: self._mandate_suspended,
            EventType.AUTONOMY_RESUMED: self._mandate_resumed,
            EventType.AUTONOMY_DEGRADED: self._mandate_degraded,
            EventType.AUTONOMY_USE_CONSUMED: self._mandate_use,
            EventType.AUTONOMY_CHECK_PASSED: self._mandate_history_only,
            EventType.AUTONOMY_CHECK_FAILED: self._mandate_history_only,
            EventType.AUTONOMY_HUMAN_REVIEW_FLAGGED: self._mandate_history_only,
            EventType.HUMAN_REVIEW_CASE_OPENED: self._review_opened,
            EventType.HUMAN_REVIEW_CASE_RESOLVED: self._review_closed,
            EventType.HUMAN_REVIEW_CASE_DISMISSED: self._review_closed,
            EventType.HUMAN_REVIEW_CASE_NOTES_UPDATED: self._review_notes,
        }

    # --- folding -------------------------------------------------------------------------------------------------

    def apply(self, entry: dict[str, Any]) -> None:
        state = self.state
        seq = entry["seq"]
        if seq != state.seq + 1:
            raise ValueError(f"entry seq {seq} does not follow the projection at seq {state.seq}")
        payload = entry.get("payload") or {}
        handler = self._handlers.get(entry["evento"])
        if handler is not None:
            try:
                handler(entry, payload)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                # The chain may be intact while an entry still does not describe a state change the Core knows
                # (written by hand, or by a foreign tool): the state cannot be rebuilt, and guessing is worse.
                raise CorruptStoreError(f"entry seq {seq} ({entry['evento']}) cannot be applied to the tenant's "
                                        f"state: {type(exc).__name__}: {exc}") from exc
        episode = state.episodios.get(payload.get("episodio_id") or "")
        if episode is not None:
            episode.ultimo_evento = entry["evento"]
            episode.ultimo_evento_em = entry.get("ts")
            episode.total_eventos += 1
        state.seq = seq
        state.head_hash = entry.get("hash")
        state.last_event_at = entry.get("ts")
        state.event_counts[entry["evento"]] = state.event_counts.get(entry["evento"], 0) + 1
        state.recent_events.append(event_summary(entry))
        del state.recent_events[:-RECENT_EVENTS]

    def _situation_created(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        situation = load_record(Situation, payload["situacao"])
        self.state.situacoes[situation.id] = situation

    def _situation_status_changed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        situation = self.state.situacoes[payload["situacao_id"]]
        situation.status = SituationStatus(payload["para"])
        situation.atualizada_em = payload["em"]

    def _episode_created(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        episode = load_record(Episode, payload["episodio"])
        self.state.episodios[episode.id] = episode
        self.state.situacoes[episode.situacao_id].episodio_id = episode.id

    def _episode_state_changed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        episode = self.state.episodios[payload["episodio_id"]]
        episode.estado = EpisodeState(payload["para"])
        setattr(episode, EPISODE_STAMP[episode.estado], payload["em"])

    def _protocol(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        protocol = load_record(DecisionProtocol, payload["protocolo"])
        self.state.protocolos[protocol.id] = protocol
        self.state.episodios[protocol.episodio_id].protocolo_id = protocol.id

    def _closed_layer(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self.state.episodios[payload["episodio_id"]].bloqueio = {"regra": payload["regra"],
                                                                 "motivo": payload["motivo"]}

    def _decision(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        decision = load_record(Decision, payload["decisao"])
        self.state.decisoes[decision.id] = decision
        self.state.episodios[decision.episodio_id].decisao_id = decision.id

    def _contract(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        contract = load_record(Contract, payload["contrato"])
        self.state.contratos[contract.id] = contract
        self.state.episodios[contract.episodio_id].contrato_id = contract.id

    def _consequence(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        consequence = load_record(Consequence, payload["observacao"])
        self.state.consequencias[consequence.id] = consequence

    # --- mandates ------------------------------------------------------------------------------------------------

    def _mandate_history(self, entry: dict[str, Any], payload: dict[str, Any]) -> Mandate | None:
        mandate = self.state.mandates.get(payload.get("mandate_id") or "")
        if mandate is not None:
            details = {k: v for k, v in payload.items() if k not in ("mandate_id", "mandate")}
            mandate.history.append({"seq": entry["seq"], "evento": entry["evento"], "timestamp": entry.get("ts"),
                                    "actor": entry.get("actor"), "details": details})
            mandate.updated_at = entry.get("ts")
        return mandate

    def _mandate_history_only(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self._mandate_history(entry, payload)

    def _mandate_granted(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = load_record(Mandate, payload["mandate"])
        self.state.mandates[mandate.id] = mandate
        self.state.agent_mandates.setdefault(mandate.agent_id, []).append(mandate.id)
        self._mandate_history(entry, {"mandate_id": mandate.id, "modo": mandate.modo})

    def _mandate_ended(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        expired = entry["evento"] == EventType.AUTONOMY_EXPIRED
        mandate.status = MandateStatus.EXPIRED if expired else MandateStatus.REVOKED
        mandate.end_reason = payload.get("motivo")

    def _mandate_suspended(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        mandate.status = MandateStatus.SUSPENDED
        mandate.suspension_reason = payload.get("motivo")
        mandate.suspended_by_consequence = payload.get("consequencia_id")

    def _mandate_resumed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        mandate.status = MandateStatus.ACTIVE
        mandate.suspension_reason = None
        mandate.suspended_by_consequence = None

    def _mandate_degraded(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self._required_mandate(entry, payload).modo = AutonomyMode(payload["para"])

    def _mandate_use(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self._required_mandate(entry, payload).uses = payload["uses"]

    def _required_mandate(self, entry: dict[str, Any], payload: dict[str, Any]) -> Mandate:
        mandate = self._mandate_history(entry, payload)
        if mandate is None:
            raise ValueError(f"event {entry['seq']} names unknown mandate {payload.get('mandate_id')!r}")
        return mandate

    # --- review cases --------------------------------------------------------------------------------------------

    def _review_opened(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        review = load_record(ReviewCase, payload["review"])
        self.state.reviews[review.id] = review
        if review.consequencia_id:
            self.state.open_review_by_consequence[review.consequencia_id] = review.id

    def _review_closed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        review = self.state.reviews[payload["review_id"]]
        resolved = entry["evento"] == EventType.HUMAN_REVIEW_CASE_RESOLVED
        review.status = ReviewStatus.RESOLVED if resolved else ReviewStatus.DISMISSED
        review.resolution = _Resolution(payload["resolution"]) if resolved else None
        self._replace_notes(review, entry, payload.get("notes"))
        review.effects = list(payload.get("effects") or [])
        review.closed_at = payload["em"]
        review.closed_by = entry.get("actor")
        if review.consequencia_id:
            self.state.open_review_by_consequence.pop(review.consequencia_id, None)

    def _review_notes(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self._replace_notes(self.state.reviews[payload["review_id"]], entry, payload["notes"])

    @staticmethod
    def _replace_notes(review: ReviewCase, entry: dict[str, Any], notes: str | None) -> None:
        """Notes are amendable, but what they said before stays on record."""
        if review.notes is not None and review.notes != notes:
            review.notes_history.append({"notes": review.notes, "replaced_at": entry["payload"]["em"],
                                         "by": entry.get("actor")})
        review.notes = notes

    # --- snapshots -----------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return orjson.dumps({"format": SNAPSHOT_FORMAT, "state": self.state})

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        document = orjson.loads(data)
        if document.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {document.get('format')!r}")
        raw = document["state"]
        kwargs: dict[str, Any] = {}
        for f in fields(CoreState):
            value = raw[f.name]
            record_type = _RECORD_MAPS.get(f.name)
            if record_type is not None:
                value = {key: load_record(record_type, item) for key, item in value.items()}
            kwargs[f.name] = value
        return cls(CoreState(**kwargs))
