"""The tenant's state as a fold over its event log.

:meth:`Projection.apply` takes one stored entry (``seq, id, ts, evento, entidade, entidade_id, actor, payload``)
and updates the state; nothing else ever changes it. Each event's payload carries everything needed here, so the
same log always gives the same state.

The state is split by what it costs to keep. The compact part (head, counters, which mandates each agent holds,
which review is open for each consequence, the newest events) stays in memory and is small whatever the history.
Records (situations, episodes, decisions, contracts...) live in :class:`~libervia.core.records.RecordMap`
objects: only the ones changed since the last flush, and a few recently read, are in memory; the rest are read
from the tenant's :class:`~libervia.core.record_index.RecordIndex` when a command or a query asks for them.
:meth:`Projection.flush_rows` gives what a flush writes; :meth:`Projection.load_compact` restores the compact part
from a flushed state row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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
from libervia.core.record_index import RecordIndex, RecordRow, StateRow
from libervia.core.records import RecordMap, encode_record
from libervia.storage import CorruptStoreError

RECENT_EVENTS = 10
STATE_FORMAT = 3   # 3: event counts by entity and type (an older row makes the Core rebuild its index)

# The compact part of the state, as written in each flushed state row.
_COMPACT_FIELDS = ("seq", "head_hash", "last_event_at", "agent_mandates", "open_review_by_consequence",
                   "event_counts_by_entity", "recent_events", "episode_states", "mandate_statuses",
                   "review_statuses", "consequence_count")


class CoreState:
    """What validating the next command needs, and the way to every record the tenant ever had."""

    def __init__(self, index: RecordIndex | None = None) -> None:
        self.index = index if index is not None else RecordIndex(None)
        self.seq = 0
        self.head_hash: str | None = None
        self.last_event_at: str | None = None
        self.agent_mandates: dict[str, list[str]] = {}          # agentId -> mandate ids, oldest first
        self.open_review_by_consequence: dict[str, str] = {}
        # entidade ("" for an entry without one) -> evento -> how many: an event listing's total, whatever it
        # filters.
        self.event_counts_by_entity: dict[str, dict[str, int]] = {}
        self.recent_events: list[dict[str, Any]] = []           # newest last
        self.episode_states: dict[str, int] = {}                # estado -> how many episodes are in it
        self.mandate_statuses: dict[str, int] = {}
        self.review_statuses: dict[str, int] = {}
        self.consequence_count = 0

        def at() -> int:
            return self.seq

        index = self.index
        self.situacoes = RecordMap("situacao", Situation, index, at)
        self.episodios = RecordMap("episodio", Episode, index, at)
        self.protocolos = RecordMap("protocolo", DecisionProtocol, index, at)
        self.decisoes = RecordMap("decisao", Decision, index, at)
        self.contratos = RecordMap("contrato", Contract, index, at)
        self.consequencias = RecordMap("consequencia", Consequence, index, at)
        self.mandates = RecordMap("mandate", Mandate, index, at)
        self.reviews = RecordMap("review", ReviewCase, index, at)

    def event_total(self, evento: str | None = None, entidade: str | None = None) -> int:
        """How many events of the log (up to ``seq``) have type ``evento`` and entity ``entidade`` (None: any)."""
        if entidade is None:
            if evento is None:
                return self.seq
            return sum(by_type.get(evento, 0) for by_type in self.event_counts_by_entity.values())
        by_type = self.event_counts_by_entity.get(entidade, {})
        return sum(by_type.values()) if evento is None else by_type.get(evento, 0)

    def record_maps(self) -> list[RecordMap[Any]]:
        return [self.situacoes, self.episodios, self.protocolos, self.decisoes, self.contratos, self.consequencias,
                self.mandates, self.reviews]

    @property
    def changed_count(self) -> int:
        """Records changed since the last flush (what a flush would write)."""
        return sum(m.changed_count for m in self.record_maps())

    @property
    def resident_count(self) -> int:
        return sum(m.resident_count for m in self.record_maps())

    def mandate_history(self, mandate: Mandate) -> list[dict[str, Any]]:
        """A mandate's whole history: what was flushed, then what was added since. Another process serving the
        tenant may have flushed entries this one still holds: an entry is known by its seq, so each is kept once."""
        flushed = [orjson.loads(body) for body in self.index.history(mandate.id, self.seq)]
        seen = {item["seq"] for item in flushed}
        return flushed + [item for item in mandate.history if item["seq"] not in seen]


def event_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """The short form of an entry used by event listings and the dashboard."""
    return {"id": entry.get("id"), "seq": entry["seq"], "evento": entry["evento"], "entidade": entry.get("entidade"),
            "entidade_id": entry.get("entidade_id"), "timestamp": entry.get("ts"), "actor": entry.get("actor")}


def _move(counts: dict[str, int], old: str | None, new: str) -> None:
    if old is not None:
        counts[old] = counts.get(old, 0) - 1
    counts[new] = counts.get(new, 0) + 1


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
        try:
            if handler is not None:
                handler(entry, payload)
            episode_id = payload.get("episodio_id")
            episode = state.episodios.edit(episode_id, seq) if isinstance(episode_id, str) else None
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            # The chain may be intact while an entry still does not describe a state change the Core knows
            # (written by hand, or by a foreign tool): the state cannot be rebuilt, and guessing is worse.
            raise CorruptStoreError(f"entry seq {seq} ({entry['evento']}) cannot be applied to the tenant's "
                                    f"state: {type(exc).__name__}: {exc}") from exc
        if episode is not None:
            episode.ultimo_evento = entry["evento"]
            episode.ultimo_evento_em = entry.get("ts")
            episode.total_eventos += 1
        state.seq = seq
        state.head_hash = entry.get("hash")
        state.last_event_at = entry.get("ts")
        evento = entry["evento"]
        entity = entry.get("entidade")
        if type(entity) is not str:
            entity = ""   # no entity a listing can ask for (its filter names one): counted for the totals by type
        by_type = state.event_counts_by_entity.get(entity)
        if by_type is None:
            by_type = state.event_counts_by_entity[entity] = {}
        by_type[evento] = by_type.get(evento, 0) + 1
        state.recent_events.append(event_summary(entry))
        del state.recent_events[:-RECENT_EVENTS]

    @staticmethod
    def _required(records: RecordMap[Any], record_id: Any, seq: int) -> Any:
        record = records.edit(record_id, seq) if isinstance(record_id, str) else None
        if record is None:
            raise KeyError(f"no {records.kind} {record_id!r}")
        return record

    def _situation_created(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self.state.situacoes.add(load_record(Situation, payload["situacao"]), entry["seq"])

    def _situation_status_changed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        situation = self._required(self.state.situacoes, payload["situacao_id"], entry["seq"])
        situation.status = SituationStatus(payload["para"])
        situation.atualizada_em = payload["em"]

    def _episode_created(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        seq = entry["seq"]
        episode = load_record(Episode, payload["episodio"])
        self._required(self.state.situacoes, episode.situacao_id, seq).episodio_id = episode.id
        self.state.episodios.add(episode, seq)
        _move(self.state.episode_states, None, episode.estado.value)

    def _episode_state_changed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        episode = self._required(self.state.episodios, payload["episodio_id"], entry["seq"])
        old = episode.estado
        episode.estado = EpisodeState(payload["para"])
        setattr(episode, EPISODE_STAMP[episode.estado], payload["em"])
        _move(self.state.episode_states, old.value, episode.estado.value)

    def _protocol(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        protocol = load_record(DecisionProtocol, payload["protocolo"])
        self._required(self.state.episodios, protocol.episodio_id, entry["seq"]).protocolo_id = protocol.id
        self.state.protocolos.add(protocol, entry["seq"])

    def _closed_layer(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        episode = self._required(self.state.episodios, payload["episodio_id"], entry["seq"])
        episode.bloqueio = {"regra": payload["regra"], "motivo": payload["motivo"]}

    def _decision(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        decision = load_record(Decision, payload["decisao"])
        self._required(self.state.episodios, decision.episodio_id, entry["seq"]).decisao_id = decision.id
        self.state.decisoes.add(decision, entry["seq"])

    def _contract(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        contract = load_record(Contract, payload["contrato"])
        self._required(self.state.episodios, contract.episodio_id, entry["seq"]).contrato_id = contract.id
        self.state.contratos.add(contract, entry["seq"])

    def _consequence(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self.state.consequencias.add(load_record(Consequence, payload["observacao"]), entry["seq"])
        self.state.consequence_count += 1

    # --- mandates ------------------------------------------------------------------------------------------------

    def _mandate_history(self, entry: dict[str, Any], payload: dict[str, Any]) -> Mandate | None:
        mandate_id = payload.get("mandate_id")
        mandate = self.state.mandates.edit(mandate_id, entry["seq"]) if isinstance(mandate_id, str) else None
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
        self.state.mandates.add(mandate, entry["seq"])
        self.state.agent_mandates.setdefault(mandate.agent_id, []).append(mandate.id)
        _move(self.state.mandate_statuses, None, mandate.status.value)
        self._mandate_history(entry, {"mandate_id": mandate.id, "modo": mandate.modo})

    def _set_status(self, mandate: Mandate, status: MandateStatus) -> None:
        _move(self.state.mandate_statuses, mandate.status.value, status.value)
        mandate.status = status

    def _mandate_ended(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        expired = entry["evento"] == EventType.AUTONOMY_EXPIRED
        self._set_status(mandate, MandateStatus.EXPIRED if expired else MandateStatus.REVOKED)
        mandate.end_reason = payload.get("motivo")

    def _mandate_suspended(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        self._set_status(mandate, MandateStatus.SUSPENDED)
        mandate.suspension_reason = payload.get("motivo")
        mandate.suspended_by_consequence = payload.get("consequencia_id")

    def _mandate_resumed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        mandate = self._required_mandate(entry, payload)
        self._set_status(mandate, MandateStatus.ACTIVE)
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
        self.state.reviews.add(review, entry["seq"])
        _move(self.state.review_statuses, None, review.status.value)
        if review.consequencia_id:
            self.state.open_review_by_consequence[review.consequencia_id] = review.id

    def _review_closed(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        review = self._required(self.state.reviews, payload["review_id"], entry["seq"])
        resolved = entry["evento"] == EventType.HUMAN_REVIEW_CASE_RESOLVED
        status = ReviewStatus.RESOLVED if resolved else ReviewStatus.DISMISSED
        _move(self.state.review_statuses, review.status.value, status.value)
        review.status = status
        review.resolution = _Resolution(payload["resolution"]) if resolved else None
        self._replace_notes(review, entry, payload.get("notes"))
        review.effects = list(payload.get("effects") or [])
        review.closed_at = payload["em"]
        review.closed_by = entry.get("actor")
        if review.consequencia_id:
            self.state.open_review_by_consequence.pop(review.consequencia_id, None)

    def _review_notes(self, entry: dict[str, Any], payload: dict[str, Any]) -> None:
        self._replace_notes(self._required(self.state.reviews, payload["review_id"], entry["seq"]), entry,
                            payload["notes"])

    @staticmethod
    def _replace_notes(review: ReviewCase, entry: dict[str, Any], notes: str | None) -> None:
        """Notes are amendable, but what they said before stays on record."""
        if review.notes is not None and review.notes != notes:
            review.notes_history.append({"notes": review.notes, "replaced_at": entry["payload"]["em"],
                                         "by": entry.get("actor")})
        review.notes = notes

    # --- flushing to the record index ----------------------------------------------------------------------------

    def flush_rows(self) -> tuple[list[RecordRow], list[tuple[str, int, bytes]], StateRow] | None:
        """What a flush writes: every record changed since the last one, the mandates' new history entries, and
        the compact state at the current seq (None before the first event)."""
        state = self.state
        if state.head_hash is None:
            return None
        history: list[tuple[str, int, bytes]] = []
        for mandate in state.mandates.changed_records():
            history += [(mandate.id, item["seq"], orjson.dumps(item)) for item in mandate.history]
            mandate.history = []   # flushed: read back from the index's history table
        rows = [row for records in state.record_maps() for row in records.changed_rows(encode_record)]
        return rows, history, StateRow(state.seq, state.head_hash, self.compact_bytes())

    def flushed(self) -> None:
        for records in self.state.record_maps():
            records.flushed()

    def compact_bytes(self) -> bytes:
        return orjson.dumps({"format": STATE_FORMAT,
                             "state": {name: getattr(self.state, name) for name in _COMPACT_FIELDS}})

    def load_compact(self, data: bytes) -> None:
        """Restore the compact state from a flushed state row (its records are in the index)."""
        document = orjson.loads(data)
        if document.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported state format {document.get('format')!r}")
        raw = document["state"]
        for name in _COMPACT_FIELDS:
            setattr(self.state, name, raw[name])
        for records in self.state.record_maps():
            records.forget()

    def to_bytes(self) -> bytes:
        """The whole state as one document, every record included (tests compare states with it; it reads the
        whole index, so the request path never calls it)."""
        state = self.state
        records = {m.kind: [encode_record(replace(r, history=[]) if isinstance(r, Mandate) else r).decode()
                            for r in m.values()] for m in state.record_maps()}
        history = {m.id: state.mandate_history(m) for m in state.mandates.values()}
        return orjson.dumps({"compact": {name: getattr(state, name) for name in _COMPACT_FIELDS},
                             "records": records, "mandateHistory": history}, option=orjson.OPT_SORT_KEYS)
