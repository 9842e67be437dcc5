"""The asynchronous client (aiohttp): one method per route of the gateway's API.

Every non-2xx answer raises the typed :class:`~libervia.client.errors.ApiError` for its status. A 429 is retried
after the ``Retry-After`` the gateway sent (at most ``max_retries`` times, each wait capped at
``max_retry_wait``); a request that gets no complete answer within ``timeout`` seconds raises
:class:`~libervia.client.errors.RequestTimeout`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import aiohttp

from libervia.client import types as t
from libervia.client.errors import (
    RateLimited,
    RequestTimeout,
    TransportError,
    error_from_response,
    retry_after_seconds,
)

NDJSON = "application/x-ndjson"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _query(**params: Any) -> dict[str, str]:
    """Query parameters without the ones left out (None); booleans as the gateway reads them."""
    result = {}
    for name, value in params.items():
        if value is None:
            continue
        result[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return result


def _body(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class AsyncClient:
    """``async with AsyncClient(url, token) as client: await client.list_tenants()``.

    ``token`` is the global admin token or a tenant key; ``tenant`` (optional) is sent as ``X-Tenant-Id`` on the
    tenant Core routes (``/api/v1``), which a tenant key does not need.
    """

    def __init__(self, base_url: str, token: str | None = None, *, tenant: str | None = None,
                 timeout: float = 30.0, max_retries: int = 3, max_retry_wait: float = 60.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.base_url, self.token, self.tenant = base_url.rstrip("/"), token, tenant
        self.timeout, self.max_retries, self.max_retry_wait = timeout, max_retries, max_retry_wait
        self._session, self._own_session = session, session is None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._own_session = True
        return self._session

    def _headers(self, tenant_api: bool, accept: str | None) -> dict[str, str]:
        headers = {"Accept": accept or "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if tenant_api and self.tenant:
            headers["X-Tenant-Id"] = self.tenant
        return headers

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json_body: Any = None, tenant_api: bool = False, accept: str | None = None) -> Any:
        """One call, retried on 429; the parsed JSON body (text for non-JSON answers)."""
        session = self._client_session()
        attempt = 0
        while True:
            try:
                async with session.request(method, self.base_url + path, params=params, json=json_body,
                                           headers=self._headers(tenant_api, accept)) as response:
                    text = await response.text()
                    headers = dict(response.headers)
                    status = response.status
            except TimeoutError as exc:
                raise RequestTimeout(f"{method} {path}: no answer within {self.timeout} s") from exc
            except aiohttp.ClientError as exc:
                raise TransportError(f"{method} {path}: {exc}") from exc
            body: Any = text
            if "json" in headers.get("Content-Type", "") and text:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = text
            if 200 <= status < 300:
                return body
            error = error_from_response(status, body, headers)
            if isinstance(error, RateLimited) and attempt < self.max_retries:
                wait = retry_after_seconds(headers, body)
                attempt += 1
                await asyncio.sleep(min(self.max_retry_wait, 1.0 if wait is None else wait))
                continue
            raise error

    # --- health and documents ----------------------------------------------------------------------------------

    async def health(self) -> t.Health:
        return cast(t.Health, await self.request("GET", "/health"))

    async def ready(self) -> t.Health:
        """Readiness; a 503 (not ready) raises :class:`ServiceUnavailable` whose ``body`` names the failing check."""
        return cast(t.Health, await self.request("GET", "/health/ready"))

    async def metrics_summary(self) -> dict[str, Any]:
        """v1's ``GET /metrics`` summary (global admin)."""
        return cast(dict[str, Any], await self.request("GET", "/metrics"))

    async def openapi(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/openapi.json"))

    async def prometheus_metrics(self) -> str:
        return cast(str, await self.request("GET", "/internal/metrics", accept="text/plain"))

    async def metrics_json(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/internal/metrics/json"))

    async def tenant_metrics_json(self, tenant_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", f"/internal/tenants/{_segment(tenant_id)}/metrics/json"))

    async def operational_health(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/internal/health/operational"))

    # --- tenants -----------------------------------------------------------------------------------------------

    async def list_tenants(self, *, status: str | None = None, include_deleted: bool | None = None,
                           limit: int | None = None, offset: int | None = None) -> list[t.Tenant]:
        params = _query(status=status, includeDeleted=include_deleted, limit=limit, offset=offset)
        return cast(list[t.Tenant], await self.request("GET", "/admin/tenants", params=params))

    async def create_tenant(self, tenant_id: str, name: str, *, quotas: t.Quotas | None = None,
                            features: dict[str, Any] | None = None,
                            metadata: dict[str, Any] | None = None) -> t.Tenant:
        body = _body(id=tenant_id, name=name, quotas=quotas, features=features, metadata=metadata)
        return cast(t.Tenant, await self.request("POST", "/admin/tenants", json_body=body))

    async def get_tenant(self, tenant_id: str) -> t.Tenant:
        return cast(t.Tenant, await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}"))

    async def update_tenant(self, tenant_id: str, *, name: str | None = None, quotas: t.Quotas | None = None,
                            features: dict[str, Any] | None = None,
                            metadata: dict[str, Any] | None = None) -> t.Tenant:
        body = _body(name=name, quotas=quotas, features=features, metadata=metadata)
        return cast(t.Tenant, await self.request("PATCH", f"/admin/tenants/{_segment(tenant_id)}", json_body=body))

    async def delete_tenant(self, tenant_id: str) -> t.Outcome:
        return cast(t.Outcome, await self.request("DELETE", f"/admin/tenants/{_segment(tenant_id)}"))

    async def purge_tenant(self, tenant_id: str) -> t.Outcome:
        return cast(t.Outcome, await self.request("POST", f"/admin/tenants/{_segment(tenant_id)}/purge",
                                                  json_body={}))

    async def suspend_tenant(self, tenant_id: str, reason: str | None = None) -> t.TenantStatusChange:
        return cast(t.TenantStatusChange, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/suspend", json_body=_body(reason=reason)))

    async def resume_tenant(self, tenant_id: str, reason: str | None = None) -> t.TenantStatusChange:
        return cast(t.TenantStatusChange, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/resume", json_body=_body(reason=reason)))

    # --- keys --------------------------------------------------------------------------------------------------

    async def create_key(self, tenant_id: str, role: t.Role, description: str | None = None) -> t.CreatedKey:
        return cast(t.CreatedKey, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/keys", json_body=_body(role=role, description=description)))

    async def list_keys(self, tenant_id: str) -> t.KeyList:
        return cast(t.KeyList, await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/keys"))

    async def revoke_key(self, tenant_id: str, key_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/keys/{_segment(key_id)}/revoke", json_body={}))

    async def rotate_keys(self, tenant_id: str, role: t.Role, *, revoke_old: bool = True) -> t.CreatedKey:
        return cast(t.CreatedKey, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/keys/rotate",
            json_body={"role": role, "revokeOld": revoke_old}))

    # --- audit -------------------------------------------------------------------------------------------------

    async def verify(self, tenant_id: str, *, fast: bool = False) -> t.Verification:
        route = "verify-fast" if fast else "verify"
        return cast(t.Verification, await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/audit/{route}"))

    async def export(self, tenant_id: str, *, from_seq: int | None = None, to_seq: int | None = None,
                     from_ts: str | None = None, to_ts: str | None = None) -> t.Export:
        params = _query(fromSeq=from_seq, toSeq=to_seq, fromTs=from_ts, toTs=to_ts)
        return cast(t.Export, await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/audit/export",
                                                 params=params))

    async def iter_export(self, tenant_id: str, *, from_seq: int | None = None, to_seq: int | None = None,
                          from_ts: str | None = None, to_ts: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """The export as it streams (NDJSON): each entry exactly as stored, then ``{"manifest": …}`` last."""
        params = _query(fromSeq=from_seq, toSeq=to_seq, fromTs=from_ts, toTs=to_ts)
        path = f"/admin/tenants/{_segment(tenant_id)}/audit/export"
        session = self._client_session()
        try:
            async with session.get(self.base_url + path, params=params,
                                   headers=self._headers(False, NDJSON)) as response:
                if response.status != 200:
                    text = await response.text()
                    try:
                        body: Any = json.loads(text)
                    except ValueError:
                        body = text
                    raise error_from_response(response.status, body, dict(response.headers))
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except TimeoutError as exc:
            raise RequestTimeout(f"GET {path}: no complete answer within {self.timeout} s") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"GET {path}: {exc}") from exc

    async def replay(self, tenant_id: str, *, evento: str | None = None, entidade: str | None = None,
                     entidade_id: str | None = None, from_ts: str | None = None,
                     to_ts: str | None = None) -> dict[str, Any]:
        params = _query(evento=evento, entidade=entidade, entidadeId=entidade_id, fromTs=from_ts, toTs=to_ts)
        return cast(dict[str, Any], await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/audit/replay",
                                                       params=params))

    async def checkpoints(self, tenant_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request(
            "GET", f"/admin/tenants/{_segment(tenant_id)}/audit/checkpoints"))

    async def tenant_events(self, tenant_id: str, *, limit: int | None = None,
                            offset: int | None = None) -> t.EventPage:
        return cast(t.EventPage, await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/events",
                                                    params=_query(limit=limit, offset=offset)))

    # --- mandates and review cases -----------------------------------------------------------------------------

    async def grant_mandate(self, tenant_id: str, mandate: dict[str, Any]) -> t.Mandate:
        return cast(t.Mandate, await self.request("POST", f"/admin/tenants/{_segment(tenant_id)}/mandates",
                                                  json_body=mandate))

    async def _mandate_action(self, tenant_id: str, mandate_id: str, action: str, body: dict[str, Any]
                              ) -> t.Mandate:
        return cast(t.Mandate, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/mandates/{_segment(mandate_id)}/{action}",
            json_body=body))

    async def revoke_mandate(self, tenant_id: str, mandate_id: str, motivo: str) -> t.Mandate:
        return await self._mandate_action(tenant_id, mandate_id, "revoke", {"motivo": motivo})

    async def suspend_mandate(self, tenant_id: str, mandate_id: str, reason: str | None = None) -> t.Mandate:
        return await self._mandate_action(tenant_id, mandate_id, "suspend", _body(reason=reason))

    async def resume_mandate(self, tenant_id: str, mandate_id: str, reason: str | None = None) -> t.Mandate:
        return await self._mandate_action(tenant_id, mandate_id, "resume", _body(reason=reason))

    async def open_review(self, tenant_id: str, consequencia_id: str, motivo: str,
                          mandate_id: str | None = None) -> t.ReviewCase:
        body = _body(consequencia_id=consequencia_id, motivo=motivo, mandateId=mandate_id)
        return cast(t.ReviewCase, await self.request("POST", f"/admin/tenants/{_segment(tenant_id)}/reviews",
                                                     json_body=body))

    async def _review_action(self, tenant_id: str, review_id: str, action: str, body: dict[str, Any]
                             ) -> t.ReviewCase:
        return cast(t.ReviewCase, await self.request(
            "POST", f"/admin/tenants/{_segment(tenant_id)}/reviews/{_segment(review_id)}/{action}", json_body=body))

    async def resolve_review(self, tenant_id: str, review_id: str, resolution: str, notes: str,
                             effects: list[str] | None = None) -> t.ReviewCase:
        return await self._review_action(tenant_id, review_id, "resolve",
                                         _body(resolution=resolution, notes=notes, effects=effects))

    async def dismiss_review(self, tenant_id: str, review_id: str, notes: str) -> t.ReviewCase:
        return await self._review_action(tenant_id, review_id, "dismiss", {"notes": notes})

    async def update_review_notes(self, tenant_id: str, review_id: str, notes: str) -> t.ReviewCase:
        return await self._review_action(tenant_id, review_id, "notes", {"notes": notes})

    # --- query panel -------------------------------------------------------------------------------------------

    async def query_tenants(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.request("GET", "/admin/query/tenants"))

    async def query_instances(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/admin/query/instances"))

    async def query_metrics(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/admin/query/metrics"))

    async def query_eventlog(self, *, tenant_id: str | None = None, event_type: str | None = None,
                             entity_type: str | None = None, limit: int | None = None,
                             offset: int | None = None) -> dict[str, Any]:
        params = _query(tenantId=tenant_id, eventType=event_type, entityType=entity_type, limit=limit, offset=offset)
        return cast(dict[str, Any], await self.request("GET", "/admin/query/eventlog", params=params))

    async def _panel(self, tenant_id: str, view: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", f"/admin/query/{_segment(tenant_id)}/{view}", params=params)

    async def query_mandates(self, tenant_id: str, *, status: str | None = None, agent_id: str | None = None,
                             limit: int | None = None, offset: int | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._panel(
            tenant_id, "mandates", _query(status=status, agentId=agent_id, limit=limit, offset=offset)))

    async def query_mandate(self, tenant_id: str, mandate_id: str) -> t.Mandate:
        return cast(t.Mandate, await self._panel(tenant_id, f"mandates/{_segment(mandate_id)}"))

    async def query_reviews(self, tenant_id: str, *, status: str | None = None, limit: int | None = None,
                            offset: int | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._panel(tenant_id, "reviews",
                                                      _query(status=status, limit=limit, offset=offset)))

    async def query_review(self, tenant_id: str, review_id: str) -> t.ReviewCase:
        return cast(t.ReviewCase, await self._panel(tenant_id, f"reviews/{_segment(review_id)}"))

    async def query_consequences(self, tenant_id: str, *, contrato_id: str | None = None, limit: int | None = None,
                                 offset: int | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._panel(
            tenant_id, "consequences", _query(contratoId=contrato_id, limit=limit, offset=offset)))

    async def query_consequence(self, tenant_id: str, consequence_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._panel(tenant_id, f"consequences/{_segment(consequence_id)}"))

    async def dashboard(self, tenant_id: str) -> t.Dashboard:
        return cast(t.Dashboard, await self._panel(tenant_id, "dashboard"))

    # --- runtime -----------------------------------------------------------------------------------------------

    async def instances(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/admin/instances"))

    async def runtime_health(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/admin/health"))

    async def runtime_metrics(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/admin/metrics"))

    async def tenant_runtime_metrics(self, tenant_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", f"/admin/tenants/{_segment(tenant_id)}/metrics"))

    async def shutdown_tenant(self, tenant_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("POST", f"/admin/tenants/{_segment(tenant_id)}/shutdown",
                                                       json_body={}))

    async def shutdown_all(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("POST", "/admin/shutdown-all", json_body={}))

    # --- the tenant Core (/api/v1) -----------------------------------------------------------------------------

    async def _core(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        return await self.request(method, "/api/v1" + path, json_body=body, params=params, tenant_api=True)

    async def decide(self, situacao: dict[str, Any], protocolo: dict[str, Any]) -> t.Decision:
        return cast(t.Decision, await self._core("POST", "/decisoes", {"situacao": situacao, "protocolo": protocolo}))

    async def episode(self, episodio_id: str) -> t.Episode:
        return cast(t.Episode, await self._core("GET", f"/episodios/{_segment(episodio_id)}"))

    async def observe(self, episodio_id: str) -> t.Episode:
        return cast(t.Episode, await self._core("POST", "/observacoes", {"episodio_id": episodio_id}))

    async def close_episode(self, episodio_id: str) -> t.Episode:
        return cast(t.Episode, await self._core("POST", f"/episodios/{_segment(episodio_id)}/encerrar", {}))

    async def record_consequence(self, consequence: dict[str, Any]) -> t.RecordedConsequence:
        return cast(t.RecordedConsequence, await self._core("POST", "/consequencias", consequence))

    async def evaluate_autonomy(self, request: dict[str, Any]) -> t.AutonomyVerdict:
        return cast(t.AutonomyVerdict, await self._core("POST", "/autonomia/avaliar", request))

    async def events(self, *, tipo: str | None = None, entidade: str | None = None, limit: int | None = None,
                     offset: int | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._core(
            "GET", "/eventos", params=_query(tipo=tipo, entidade=entidade, limit=limit, offset=offset)))

    async def eventlog_status(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._core("GET", "/eventlog/status"))
