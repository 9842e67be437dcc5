"""Typed shapes of the gateway's main responses (``TypedDict``: the objects are the parsed JSON itself).

Only the fields a client can rely on are listed; every response may carry more (v1 fields beside ours, see
``docs/MIGRATING.md``). The complete contract is ``GET /openapi.json``.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Role = Literal["public", "tenant_admin"]
TenantStatus = Literal["active", "suspended", "deleted"]


class Quotas(TypedDict, total=False):
    rateLimitRpm: int
    maxEvents: int | None
    maxStorageMB: float | None


class KeyCounts(TypedDict):
    active: int
    revoked: int


class Tenant(TypedDict):
    id: str
    name: str
    status: TenantStatus
    createdAt: str
    updatedAt: str
    quotas: Quotas
    features: dict[str, Any]
    metadata: dict[str, Any]
    keys: KeyCounts


class Outcome(TypedDict):
    success: bool
    message: str


class TenantStatusChange(Outcome):
    tenant: Tenant


class CreatedKey(TypedDict, total=False):
    keyId: str
    role: Role
    token: str
    createdAt: str
    warning: str
    revokedKeyIds: list[str]


class KeyInfo(TypedDict):
    keyId: str
    role: Role
    status: Literal["active", "revoked"]
    createdAt: str
    lastUsedAt: str | None
    description: str | None


class KeyList(TypedDict):
    keys: list[KeyInfo]
    count: int


class Verification(TypedDict, total=False):
    valid: bool
    totalVerified: int
    headHash: str | None
    firstInvalidIndex: int
    firstInvalidId: str
    reason: str
    fromSeq: int
    checkpoint: dict[str, Any]


class Manifest(TypedDict):
    count: int
    firstSeq: int | None
    lastSeq: int | None
    firstHash: str | None
    lastHash: str | None
    chainValidWithinExport: bool


class Export(TypedDict):
    entries: list[dict[str, Any]]
    manifest: Manifest


class EventPage(TypedDict):
    events: list[dict[str, Any]]
    count: int
    total: int


class Contract(TypedDict, total=False):
    """The decision contract; the fields a client acts on (the rest is in the OpenAPI document)."""

    id: str
    episodio_id: str
    alternativa_autorizada: str
    observacao_minima_requerida: list[str]


class Decision(TypedDict):
    contrato: Contract
    episodio_id: str
    metadados: dict[str, Any]


class Episode(TypedDict, total=False):
    episodio_id: str
    estado: Literal["CRIADO", "DECIDIDO", "EM_OBSERVACAO", "ENCERRADO"]
    ultimo_evento: str | None
    total_eventos: int
    tem_contrato: bool
    contrato_id: str
    timestamp: str | None
    success: bool
    message: str


class RecordedConsequence(TypedDict):
    observacao: dict[str, Any]
    autonomy: dict[str, Any]


class AutonomyVerdict(TypedDict, total=False):
    permitido: bool
    regra: str
    motivo: str
    requer_revisao_humana: bool
    mandateId: str | None


class Mandate(TypedDict, total=False):
    id: str
    agentId: str
    modo: str
    status: Literal["active", "suspended", "revoked", "expired"]
    grantedAt: str
    createdAt: str
    history: list[dict[str, Any]]


class ReviewCase(TypedDict, total=False):
    id: str
    status: Literal["OPEN", "RESOLVED", "DISMISSED"]
    consequencia_id: str | None
    mandateId: str | None
    opened_at: str
    createdAt: str
    effects: list[dict[str, Any]]


class Dashboard(TypedDict, total=False):
    tenantId: str
    tenant: dict[str, Any]
    mandates: dict[str, int]
    reviews: dict[str, int]
    consequences: dict[str, int]
    recentEvents: list[dict[str, Any]]
    timestamp: str


class Health(TypedDict, total=False):
    status: str
    version: str
    uptime_s: float
    uptime: float
    timestamp: str
    checks: dict[str, Any]
