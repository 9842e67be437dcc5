"""The Core's vocabulary: states with their allowed transitions, and the records the projection keeps.

Records are plain dataclasses so the projection can be serialised for snapshots (orjson handles dataclasses and
enums natively) and loaded back with :func:`load_record`. Field names follow the product's own wording
(``DOMAIN.md``); :meth:`to_api` methods give the wire shape of ``API.md``. The module is a little over 400 lines
because it is one list of definitions (enums and records, no behaviour beyond their wire shape): splitting it
would only scatter the vocabulary a reader looks up in one place.
"""

from __future__ import annotations

import enum
import functools
import secrets
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SYSTEM_ACTOR = "system"  # the Core acting on its own (consequence policy, expiry); never a human


def new_id(prefix: str) -> str:
    """An unguessable id such as ``sit_3q2…``: 16 random bytes, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


class EventType(enum.StrEnum):
    SITUACAO_CRIADA = "SITUACAO_CRIADA"
    SITUACAO_STATUS_ALTERADO = "SITUACAO_STATUS_ALTERADO"
    EPISODIO_CRIADO = "EPISODIO_CRIADO"
    EPISODIO_ESTADO_ALTERADO = "EPISODIO_ESTADO_ALTERADO"
    PROTOCOLO_VALIDADO = "PROTOCOLO_VALIDADO"
    PROTOCOLO_REJEITADO = "PROTOCOLO_REJEITADO"
    CLOSED_LAYER_BLOQUEOU = "CLOSED_LAYER_BLOQUEOU"
    DECISAO_REGISTRADA = "DECISAO_REGISTRADA"
    CONTRATO_EMITIDO = "CONTRATO_EMITIDO"
    CONSEQUENCIA_REGISTRADA = "CONSEQUENCIA_REGISTRADA"
    AUTONOMY_GRANTED = "AUTONOMY_GRANTED"
    AUTONOMY_REVOKED = "AUTONOMY_REVOKED"
    AUTONOMY_CHECK_PASSED = "AUTONOMY_CHECK_PASSED"
    AUTONOMY_CHECK_FAILED = "AUTONOMY_CHECK_FAILED"
    AUTONOMY_EXPIRED = "AUTONOMY_EXPIRED"
    AUTONOMY_USE_CONSUMED = "AUTONOMY_USE_CONSUMED"
    AUTONOMY_SUSPENDED = "AUTONOMY_SUSPENDED"
    AUTONOMY_RESUMED = "AUTONOMY_RESUMED"
    AUTONOMY_DEGRADED = "AUTONOMY_DEGRADED"
    AUTONOMY_REVOKED_BY_CONSEQUENCE = "AUTONOMY_REVOKED_BY_CONSEQUENCE"
    AUTONOMY_HUMAN_REVIEW_FLAGGED = "AUTONOMY_HUMAN_REVIEW_FLAGGED"
    HUMAN_REVIEW_CASE_OPENED = "HUMAN_REVIEW_CASE_OPENED"
    HUMAN_REVIEW_CASE_RESOLVED = "HUMAN_REVIEW_CASE_RESOLVED"
    HUMAN_REVIEW_CASE_DISMISSED = "HUMAN_REVIEW_CASE_DISMISSED"
    HUMAN_REVIEW_CASE_NOTES_UPDATED = "HUMAN_REVIEW_CASE_NOTES_UPDATED"
    # Written to the tenant's log by the tenant registry, not by the Core; the projection only counts them.
    TENANT_SUSPENDED = "TENANT_SUSPENDED"
    TENANT_RESUMED = "TENANT_RESUMED"
    KEY_CREATED = "KEY_CREATED"
    KEY_REVOKED = "KEY_REVOKED"


class Entity(enum.StrEnum):
    SITUATION = "SituacaoDecisoria"
    EPISODE = "EpisodioDecisao"
    PROTOCOL = "DecisionProtocol"
    DECISION = "DecisaoInstitucional"
    CONTRACT = "ContratoDeDecisao"
    CONSEQUENCE = "ObservacaoDeConsequencia"
    MANDATE = "AutonomyMandate"
    REVIEW = "ReviewCase"
    TENANT = "Tenant"
    API_KEY = "ApiKey"


class SituationStatus(enum.StrEnum):
    RASCUNHO = "RASCUNHO"
    ABERTA = "ABERTA"
    ACEITA = "ACEITA"
    REJEITADA = "REJEITADA"
    EM_ANALISE = "EM_ANALISE"
    DECIDIDA = "DECIDIDA"
    EM_OBSERVACAO = "EM_OBSERVACAO"
    ENCERRADA = "ENCERRADA"


SITUATION_TRANSITIONS: dict[SituationStatus, frozenset[SituationStatus]] = {
    SituationStatus.RASCUNHO: frozenset({SituationStatus.ABERTA}),
    SituationStatus.ABERTA: frozenset({SituationStatus.ACEITA, SituationStatus.REJEITADA}),
    SituationStatus.ACEITA: frozenset({SituationStatus.EM_ANALISE}),
    SituationStatus.EM_ANALISE: frozenset({SituationStatus.DECIDIDA, SituationStatus.REJEITADA}),
    SituationStatus.DECIDIDA: frozenset({SituationStatus.EM_OBSERVACAO}),
    SituationStatus.EM_OBSERVACAO: frozenset({SituationStatus.ENCERRADA}),
    SituationStatus.REJEITADA: frozenset(),
    SituationStatus.ENCERRADA: frozenset(),
}


class EpisodeState(enum.StrEnum):
    CRIADO = "CRIADO"
    DECIDIDO = "DECIDIDO"
    EM_OBSERVACAO = "EM_OBSERVACAO"
    ENCERRADO = "ENCERRADO"


EPISODE_TRANSITIONS: dict[EpisodeState, frozenset[EpisodeState]] = {
    EpisodeState.CRIADO: frozenset({EpisodeState.DECIDIDO, EpisodeState.ENCERRADO}),
    EpisodeState.DECIDIDO: frozenset({EpisodeState.EM_OBSERVACAO}),
    EpisodeState.EM_OBSERVACAO: frozenset({EpisodeState.ENCERRADO}),
    EpisodeState.ENCERRADO: frozenset(),
}

# The episode field that remembers when it entered each state.
EPISODE_STAMP: dict[EpisodeState, str] = {
    EpisodeState.CRIADO: "criado_em",
    EpisodeState.DECIDIDO: "decidido_em",
    EpisodeState.EM_OBSERVACAO: "observacao_iniciada_em",
    EpisodeState.ENCERRADO: "encerrado_em",
}


class RiskProfile(enum.StrEnum):
    CONSERVADOR = "CONSERVADOR"
    MODERADO = "MODERADO"
    AGRESSIVO = "AGRESSIVO"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {RiskProfile.CONSERVADOR: 0, RiskProfile.MODERADO: 1, RiskProfile.AGRESSIVO: 2}


class AutonomyMode(enum.StrEnum):
    ENSINO = "ENSINO"
    VIVENCIA_ASSISTIDA = "VIVENCIA_ASSISTIDA"
    VIVENCIA_AUTONOMA = "VIVENCIA_AUTONOMA"

    @property
    def rank(self) -> int:
        return _MODE_ORDER.index(self)

    def degraded(self) -> AutonomyMode | None:
        """One step down (AUTONOMA → ASSISTIDA → ENSINO); None when already at the bottom."""
        return _MODE_ORDER[self.rank - 1] if self.rank > 0 else None


_MODE_ORDER = [AutonomyMode.ENSINO, AutonomyMode.VIVENCIA_ASSISTIDA, AutonomyMode.VIVENCIA_AUTONOMA]


class MandateStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ProtocolState(enum.StrEnum):
    VALIDADO = "VALIDADO"
    REJEITADO = "REJEITADO"


class ReviewStatus(enum.StrEnum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"
    DISMISSED = "DISMISSED"


class Resolution(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    NEEDS_MORE_INFO = "NEEDS_MORE_INFO"
    NO_ACTION = "NO_ACTION"


class ReviewEffect(enum.StrEnum):
    RESUME_MANDATE = "RESUME_MANDATE"
    REVOKE_MANDATE = "REVOKE_MANDATE"
    KEEP_SUSPENDED = "KEEP_SUSPENDED"
    DEGRADE_MODE = "DEGRADE_MODE"


class Severity(enum.StrEnum):
    BAIXA = "BAIXA"
    MEDIA = "MEDIA"
    ALTA = "ALTA"
    CRITICA = "CRITICA"


class ConsequenceCategory(enum.StrEnum):
    OPERACIONAL = "OPERACIONAL"
    FINANCEIRA = "FINANCEIRA"
    SEGURANCA = "SEGURANCA"
    LEGAL = "LEGAL"
    REPUTACAO = "REPUTACAO"
    ETICA = "ETICA"
    OUTRA = "OUTRA"


class ConsequenceAction(enum.StrEnum):
    REVOKE = "REVOKE"
    SUSPEND = "SUSPEND"
    DEGRADE = "DEGRADE"
    REVIEW = "REVIEW"
    NONE = "NONE"


MINIMUM_OBSERVATIONS = (
    "Impacto Técnico observado",
    "Impacto Operacional observado",
    "Evidências coletadas",
    "Persistência avaliada",
)


# --- records ---------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Situation:
    id: str
    status: SituationStatus
    dominio: str
    contexto: str
    objetivo: str
    incertezas: list[Any]
    alternativas: list[dict[str, Any]]
    riscos: list[dict[str, Any]]
    urgencia: Any
    capacidade_absorcao: Any
    consequencia_relevante: str
    possibilidade_aprendizado: bool
    caso_uso_declarado: int
    criada_em: str
    episodio_id: str | None = None
    atualizada_em: str | None = None

    def to_api(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(slots=True)
class DecisionProtocol:
    id: str
    episodio_id: str
    estado: ProtocolState
    criterios_minimos: list[Any]
    riscos_considerados: list[Any]
    limites_definidos: list[Any]
    perfil_risco: RiskProfile | None
    alternativas_avaliadas: list[str]
    alternativa_escolhida: str | None
    memoria_consultada_ids: list[str]
    motivos: list[str]
    validado_em: str


@dataclass(slots=True)
class Episode:
    id: str
    situacao_id: str
    estado: EpisodeState
    criado_em: str
    decidido_em: str | None = None
    observacao_iniciada_em: str | None = None
    encerrado_em: str | None = None
    protocolo_id: str | None = None
    decisao_id: str | None = None
    contrato_id: str | None = None
    bloqueio: dict[str, Any] | None = None      # the closed-layer rule that blocked it, if any
    ultimo_evento: str | None = None
    ultimo_evento_em: str | None = None
    total_eventos: int = 0

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "episodio_id": self.id,
            "estado": self.estado,
            "ultimo_evento": self.ultimo_evento,
            "total_eventos": self.total_eventos,
            "tem_contrato": self.contrato_id is not None,
            "timestamp": self.ultimo_evento_em,
            "situacao_id": self.situacao_id,
            "criado_em": self.criado_em,
            "decidido_em": self.decidido_em,
            "observacao_iniciada_em": self.observacao_iniciada_em,
            "encerrado_em": self.encerrado_em,
        }
        if self.contrato_id:
            body["contrato_id"] = self.contrato_id
        if self.bloqueio:
            body["bloqueio"] = self.bloqueio
        return body


@dataclass(slots=True)
class Decision:
    id: str
    episodio_id: str
    protocolo_id: str
    alternativa_escolhida: str
    perfil_risco: RiskProfile
    criterios: list[Any]
    limites: list[Any]
    registrada_em: str
    registrada_por: str | None


@dataclass(slots=True)
class Contract:
    id: str
    episodio_id: str
    decisao_id: str
    alternativa_autorizada: str
    limites_execucao: list[Any]
    condicoes_obrigatorias: list[Any]
    observacao_minima_requerida: list[str]
    data_emissao: str
    emitido_para: str | None

    def to_api(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(slots=True)
class Consequence:
    id: str
    contrato_id: str
    episodio_id: str
    observada: dict[str, Any]
    percebida: dict[str, Any]
    evidencias_minimas: list[str]
    observacao_anterior_id: str | None
    agent_id: str | None
    autonomy_triggers: dict[str, Any] | None
    autonomy: dict[str, Any]
    registrada_em: str
    registrada_por: str | None

    def to_api(self) -> dict[str, Any]:
        body = _plain(self)
        body["agentId"] = body.pop("agent_id")
        body["autonomyTriggers"] = body.pop("autonomy_triggers")
        return body


@dataclass(slots=True)
class Mandate:
    id: str
    agent_id: str
    modo: AutonomyMode
    politicas_permitidas: list[str]
    perfil_risco_maximo: RiskProfile
    limites: list[Any]
    requer_humano_se: list[str]
    dominios_permitidos: list[str]
    casos_uso_permitidos: list[int]
    valid_from: str | None
    valid_until: str | None
    max_uses: int | None
    granted_at: str
    granted_by: str | None
    uses: int = 0
    status: MandateStatus = MandateStatus.ACTIVE
    suspension_reason: str | None = None
    suspended_by_consequence: str | None = None
    end_reason: str | None = None          # why it was revoked or expired
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self, *, with_history: bool = False) -> dict[str, Any]:
        body = {
            "id": self.id,
            "agentId": self.agent_id,
            "modo": self.modo,
            "politicas_permitidas": self.politicas_permitidas,
            "perfil_risco_maximo": self.perfil_risco_maximo,
            "limites": self.limites,
            "requer_humano_se": self.requer_humano_se,
            "dominios_permitidos": self.dominios_permitidos,
            "casos_uso_permitidos": self.casos_uso_permitidos,
            "validFrom": self.valid_from,
            "validUntil": self.valid_until,
            "maxUses": self.max_uses,
            "uses": self.uses,
            "status": self.status,
            "suspensionReason": self.suspension_reason,
            "suspendedByConsequence": self.suspended_by_consequence,
            "endReason": self.end_reason,
            "grantedAt": self.granted_at,
            "grantedBy": self.granted_by,
            "updatedAt": self.updated_at,
        }
        if with_history:
            body["history"] = self.history
        return body


@dataclass(slots=True)
class ReviewCase:
    id: str
    consequencia_id: str | None
    mandate_id: str | None
    agent_id: str | None
    motivo: str
    regra: str | None
    status: ReviewStatus
    opened_at: str
    opened_by: str | None
    resolution: Resolution | None = None
    notes: str | None = None
    effects: list[dict[str, Any]] = field(default_factory=list)
    closed_at: str | None = None
    closed_by: str | None = None
    notes_history: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        body = _plain(self)
        body["mandateId"] = body.pop("mandate_id")
        body["agentId"] = body.pop("agent_id")
        return body


# --- (de)serialisation ------------------------------------------------------------------------------------------

R = TypeVar("R", bound="DataclassInstance")


def _plain(record: Any) -> dict[str, Any]:
    """The record as a dict of its fields (enum members stay, they are ``str`` subclasses)."""
    kind: type = type(record)
    return {name: getattr(record, name) for name in _field_names(kind)}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


_NO_DEFAULT: Any = object()


@functools.cache
def _loaders(cls: type) -> tuple[tuple[str, Any, Any, type[enum.Enum] | None], ...]:
    """Per field of ``cls``: its name, default, default factory and enum type (computed once per class: the
    projection loads five records per decision)."""
    enums = _enum_fields(cls)
    return tuple((f.name, _NO_DEFAULT if f.default is MISSING else f.default,
                  None if f.default_factory is MISSING else f.default_factory, enums.get(f.name))
                 for f in fields(cls))


@functools.cache
def _enum_fields(cls: type) -> dict[str, type[enum.Enum]]:
    """Which fields of ``cls`` hold an enum (possibly optional), so loading can restore the members."""
    found: dict[str, type[enum.Enum]] = {}
    for name, hint in typing.get_type_hints(cls).items():
        candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
                found[name] = candidate
    return found


def load_record(cls: type[R], data: dict[str, Any]) -> R:
    """Rebuild a record from its plain dict form (as stored in events and snapshots)."""
    kwargs: dict[str, Any] = {}
    for name, default, factory, kind in _loaders(cls):
        if name in data:
            value = data[name]
        elif default is not _NO_DEFAULT:
            value = default
        elif factory is not None:
            value = factory()
        else:
            raise KeyError(f"{cls.__name__} record lacks {name!r}")
        if value is not None and kind is not None:
            value = kind(value)
        kwargs[name] = value
    return cls(**kwargs)
