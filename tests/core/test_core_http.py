"""The Core over HTTP against a real gateway process: the flow, concurrency on a cold tenant, restart, fuzzing."""

from __future__ import annotations

import asyncio
import copy
import http.client
from collections.abc import Callable
from json import dumps as json_dumps
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core import bodies
from tests.gateway_process import GatewayProcess

UNLIMITED = {"quotas": {"rateLimitRpm": 0}}


class TenantClient:
    """A tenant with a public and a tenant_admin key on one gateway."""

    def __init__(self, gateway: GatewayProcess, tenant: str, public: str, admin: str) -> None:
        self.gateway, self.tenant, self.public, self.admin = gateway, tenant, public, admin

    @classmethod
    async def create(cls, gateway: GatewayProcess, tenant: str) -> TenantClient:
        await gateway.create_tenant(tenant, **UNLIMITED)
        return cls(gateway, tenant, await gateway.create_key(tenant, "public"),
                   await gateway.create_key(tenant, "tenant_admin"))

    async def api(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, _, body = await self.gateway.request(method, f"/api/v1{path}", self.public, json=json)
        return status, body

    async def manage(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, _, body = await self.gateway.request(method, f"/admin/tenants/{self.tenant}{path}", self.admin,
                                                     json=json)
        return status, body

    async def query(self, path: str) -> Any:
        status, _, body = await self.gateway.request("GET", f"/admin/query/{self.tenant}{path}", self.admin)
        assert status == 200, body
        return body


async def _decide(client: TenantClient) -> dict[str, Any]:
    status, body = await client.api("POST", "/decisoes", bodies.decisao())
    assert status == 201, body
    return body


async def test_core_flow_over_http(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("core"))
    decision = await _decide(client)
    episodio_id, contrato_id = decision["episodio_id"], decision["contrato"]["id"]

    status, body = await client.api("GET", f"/episodios/{episodio_id}")
    assert status == 200 and body["estado"] == "DECIDIDO" and body["contrato_id"] == contrato_id
    assert (await client.api("POST", "/observacoes", {"episodio_id": episodio_id}))[1]["estado"] == "EM_OBSERVACAO"
    status, body = await client.api("POST", f"/episodios/{episodio_id}/encerrar")
    assert status == 200 and body["estado"] == "ENCERRADO"
    status, body = await client.api("POST", f"/episodios/{episodio_id}/encerrar")
    assert status == 409 and body["code"] == "INVALID_STATE"

    status, mandate = await client.manage("POST", "/mandates", bodies.mandato())
    assert status == 201 and mandate["grantedBy"].startswith("key_")
    status, body = await client.api("POST", "/consequencias", bodies.consequencia(
        contrato_id, agentId="agente-1", autonomyTriggers={"severidade": "MEDIA", "violou_limites": True}))
    assert status == 201 and body["autonomy"]["action"] == "SUSPEND"
    review_id = body["autonomy"]["reviewCaseId"]

    status, _, listed = await gateway_server.request("GET", "/admin/query/tenants", gateway_server.admin_token)
    assert status == 200 and isinstance(listed, list)
    row = next(t for t in listed if t["id"] == client.tenant)
    assert row["mandates"] == {"active": 0, "suspended": 1}

    status, body = await client.api("POST", "/autonomia/avaliar", bodies.avaliacao())
    assert status == 200 and body["regra"] == "REGRA_6_MANDATO_SUSPENSO"
    status, body = await client.manage("POST", f"/reviews/{review_id}/resolve",
                                       {"resolution": "APPROVE", "notes": "ok", "effects": ["RESUME_MANDATE"]})
    assert status == 200 and body["effects"][0]["ok"] is True
    detail = await client.query(f"/mandates/{mandate['id']}")
    assert detail["status"] == "active" and [h["evento"] for h in detail["history"]][-1] == "AUTONOMY_RESUMED"
    assert (await client.query("/reviews?status=RESOLVED"))["total"] == 1
    assert (await client.query("/consequences"))["total"] == 1

    status, body = await client.api("GET", "/eventos?tipo=AUTONOMY_RESUMED")
    assert status == 200 and body["total"] == 1 and body["eventos"][0]["actor"].startswith("key_")
    status, body = await client.api("GET", "/eventlog/status")
    assert status == 200 and body["enabled"] is True and body["events"] > 10


async def test_domain_and_schema_errors_over_http(gateway_server: GatewayProcess,
                                                  unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("core"))
    status, body = await client.api("POST", "/decisoes", bodies.decisao(criterios_minimos=[], limites_definidos=[]))
    assert status == 422 and body["code"] == "PROTOCOL_REJECTED" and len(body["details"]["reasons"]) == 2
    status, body = await client.api("POST", "/decisoes", bodies.decisao({"consequencia_relevante": " "}))
    assert status == 422 and body["code"] == "CLOSED_LAYER_BLOCKED"
    assert body["details"]["rule"] == "BLOQUEAR_SEM_CONSEQUENCIA"
    status, body = await client.api("POST", "/decisoes", bodies.decisao({"caso_uso_declarado": 9}))
    assert status == 400 and body["code"] == "VALIDATION_ERROR"
    assert body["details"][0]["path"] == "$.situacao.caso_uso_declarado"
    status, body = await client.api("GET", "/episodios/epi_missing")
    assert status == 404 and body["code"] == "EPISODE_NOT_FOUND"
    # The path form of tenant resolution reaches the same Core.
    status, _, body = await gateway_server.request("POST", f"/api/v1/tenants/{client.tenant}/decisoes",
                                                   client.public, json=bodies.decisao())
    assert status == 201
    # A public key cannot manage mandates.
    status, _, body = await gateway_server.request("POST", f"/admin/tenants/{client.tenant}/mandates",
                                                   client.public, json=bodies.mandato())
    assert status == 403


async def test_50_concurrent_decisions_on_a_cold_tenant(gateway_server: GatewayProcess,
                                                        unique_id: Callable[[str], str]) -> None:
    client = await TenantClient.create(gateway_server, unique_id("cold"))
    admin = gateway_server.admin_token
    status, _, _ = await gateway_server.request("POST", f"/admin/tenants/{client.tenant}/shutdown", admin)
    assert status == 200

    results = await asyncio.gather(*(client.api("POST", "/decisoes", bodies.decisao()) for _ in range(50)))
    assert [status for status, _ in results] == [201] * 50
    assert len({body["contrato"]["id"] for _, body in results}) == 50

    status, _, instances = await gateway_server.request("GET", "/admin/instances", admin)
    mine = [i for i in instances["instances"] if i["tenant"] == client.tenant]
    assert len(mine) == 1 and mine[0]["replayedEvents"] == 2  # the two KEY_CREATED events
    assert mine[0]["events"] == 2 + 50 * 10
    status, _, verify = await gateway_server.request("GET", f"/admin/tenants/{client.tenant}/audit/verify", admin)
    assert status == 200 and verify["valid"] is True and verify["totalVerified"] == 2 + 50 * 10

    status, _, _ = await gateway_server.request("POST", "/admin/tenants/no-such-tenant/shutdown", admin)
    assert status == 404


async def _mid_life(client: TenantClient) -> None:
    first, second = await _decide(client), await _decide(client)
    await client.api("POST", "/observacoes", {"episodio_id": first["episodio_id"]})
    await client.api("POST", "/observacoes", {"episodio_id": second["episodio_id"]})
    await client.api("POST", f"/episodios/{second['episodio_id']}/encerrar")
    await client.api("POST", "/decisoes", bodies.decisao(limites_definidos=[]))
    for agent in ("a1", "a2", "a3"):
        assert (await client.manage("POST", "/mandates", bodies.mandato(agent, maxUses=3)))[0] == 201
    await client.api("POST", "/autonomia/avaliar", bodies.avaliacao("a3", consumir=True))
    for agent, triggers in (("a1", {"severidade": "MEDIA", "violou_limites": True}),
                            ("a2", {"severidade": "CRITICA"}), ("a3", {"severidade": "ALTA", "categoria": "LEGAL"})):
        status, _ = await client.api("POST", "/consequencias", bodies.consequencia(
            first["contrato"]["id"], agentId=agent, autonomyTriggers=triggers))
        assert status == 201


async def _observable_state(client: TenantClient) -> dict[str, Any]:
    events = (await client.api("GET", "/eventos?limit=200"))[1]
    episodes = sorted({e["entidade_id"] for e in events["eventos"] if e["entidade"] == "EpisodioDecisao"})
    return {
        "episodes": [(await client.api("GET", f"/episodios/{e}"))[1] for e in episodes],
        "mandates": await client.query("/mandates?limit=200"),
        "reviews": await client.query("/reviews"),
        # the dashboard's timestamp is the time of the request, not state
        "dashboard": {k: v for k, v in (await client.query("/dashboard")).items() if k != "timestamp"},
    }


async def test_restart_mid_life_gives_identical_state(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory()
    client = await TenantClient.create(gateway, "restart-me")
    await _mid_life(client)
    before = await _observable_state(client)
    assert before["dashboard"]["mandates"]["suspended"] == 1 and before["dashboard"]["reviews"]["OPEN"] == 2
    gateway.restart()
    assert await _observable_state(client) == before
    # And after a restart the tenant keeps deciding.
    await _decide(client)


# --- fuzzing ---------------------------------------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
HOSTILE = st.sampled_from(["x" * 300_000, "\u0000\ud7ff\ue000" * 1000, "ç" * 50_000, -1, 10**30, 1e308, [],
                           {}, True, None, "", " "])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutated(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid body with one field replaced by a wrong type, a hostile value or removed."""
    paths = _paths(base)
    if not paths:
        return JSON_VALUES

    def mutate(path: tuple[Any, ...], replacement: Any, remove: bool) -> Any:
        body = copy.deepcopy(base)
        target = body
        for step in path[:-1]:
            target = target[step]
        if remove and isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = replacement
        return body

    return st.builds(mutate, st.sampled_from(paths), JSON_VALUES | HOSTILE, st.booleans())


@pytest.fixture
async def fuzz_target(gateway_server: GatewayProcess, unique_id: Callable[[str], str]) -> dict[str, Any]:
    """A tenant with a contract, a mandate and an open review case, so valid ids reach deep into the Core."""
    client = await TenantClient.create(gateway_server, unique_id("fuzz"))
    decision = await _decide(client)
    mandate = (await client.manage("POST", "/mandates", bodies.mandato()))[1]
    status, consequence = await client.api("POST", "/consequencias", bodies.consequencia(
        decision["contrato"]["id"], agentId="agente-1", autonomyTriggers={"severidade": "ALTA", "categoria": "ETICA"}))
    assert status == 201
    return {"client": client, "contrato": decision["contrato"]["id"], "episodio": decision["episodio_id"],
            "mandate": mandate["id"], "review": consequence["autonomy"]["reviewCaseId"],
            "observacao": consequence["observacao"]["id"]}


def _routes(t: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (token kind, path, valid body)."""
    tenant = t["client"].tenant
    admin = f"/admin/tenants/{tenant}"
    return {
        "decisoes": ("public", "/api/v1/decisoes", bodies.decisao(memoria_consultada_ids=[t["episodio"]])),
        "observacoes": ("public", "/api/v1/observacoes", {"episodio_id": t["episodio"]}),
        "encerrar": ("public", f"/api/v1/episodios/{t['episodio']}/encerrar", {}),
        "consequencias": ("public", "/api/v1/consequencias", bodies.consequencia(
            t["contrato"], agentId="agente-1", observacao_anterior_id=t["observacao"],
            autonomyTriggers={"severidade": "BAIXA", "categoria": "OUTRA", "violou_limites": False,
                              "reversivel": True, "perda_relevante": False})),
        "avaliar": ("public", "/api/v1/autonomia/avaliar", bodies.avaliacao(
            mandateId=t["mandate"], dominio="x", caso_uso=1, episodio_id=t["episodio"], consumir=False)),
        "grant": ("admin", f"{admin}/mandates", bodies.mandato(
            dominios_permitidos=["a"], casos_uso_permitidos=[1], validFrom="2020-01-01T00:00:00Z",
            validUntil="2999-01-01T00:00:00.000+01:00", maxUses=5)),
        "revoke": ("admin", f"{admin}/mandates/{t['mandate']}/revoke", {"motivo": "x"}),
        "suspend": ("admin", f"{admin}/mandates/{t['mandate']}/suspend", {"reason": "x"}),
        "resume": ("admin", f"{admin}/mandates/{t['mandate']}/resume", {"reason": "x"}),
        "review_open": ("admin", f"{admin}/reviews", {"consequencia_id": t["observacao"], "motivo": "x",
                                                      "mandateId": t["mandate"]}),
        "resolve": ("admin", f"{admin}/reviews/{t['review']}/resolve",
                    {"resolution": "APPROVE", "notes": "x", "effects": ["KEEP_SUSPENDED", "DEGRADE_MODE"]}),
        "dismiss": ("admin", f"{admin}/reviews/{t['review']}/dismiss", {"notes": "x"}),
        "notes": ("admin", f"{admin}/reviews/{t['review']}/notes", {"notes": "x"}),
    }


ROUTE_NAMES = ["decisoes", "observacoes", "encerrar", "consequencias", "avaliar", "grant", "revoke", "suspend",
               "resume", "review_open", "resolve", "dismiss", "notes"]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)


class KeepAliveClient:
    """A blocking HTTP/1.1 client on one connection: hypothesis drives examples synchronously."""

    def __init__(self, url: str, token: str) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.token = token
        self.connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)

    def send(self, method: str, path: str, data: bytes | None = None) -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            # The server may close a connection after an oversized body; one fresh connection retries it.
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode(errors="replace")


@pytest.mark.parametrize("route_name", ROUTE_NAMES)
def test_fuzzed_core_bodies_never_cause_a_5xx(fuzz_target: dict[str, Any], route_name: str) -> None:
    client: TenantClient = fuzz_target["client"]
    kind, path, valid = _routes(fuzz_target)[route_name]
    http_client = KeepAliveClient(client.gateway.url, client.public if kind == "public" else client.admin)
    seen: set[int] = set()

    @FUZZ
    @given(body=st.one_of(_mutated(valid), JSON_VALUES, HOSTILE))
    def probe(body: Any) -> None:
        data = (body[1] if isinstance(body, tuple) else json_dumps(body)).encode()
        status, content_type, text = http_client.send("POST", path, data)
        seen.add(status)
        assert status < 500, f"{status} for {data[:300]!r}: {text[:500]}"
        assert content_type.startswith("application/json")

    probe()
    assert seen - {200, 201}, "the fuzzer never produced an invalid body"


@pytest.mark.parametrize("depth", [100, 900, 1000, 5000])
@pytest.mark.parametrize("route_name", ["decisoes", "grant"])
def test_deeply_nested_bodies_are_client_errors(fuzz_target: dict[str, Any], route_name: str, depth: int) -> None:
    """Nesting deep enough to exhaust recursion while parsing or describing a schema error is still a 400."""
    client: TenantClient = fuzz_target["client"]
    kind, path, _ = _routes(fuzz_target)[route_name]
    http_client = KeepAliveClient(client.gateway.url, client.public if kind == "public" else client.admin)
    for body in ("[" * depth + "]" * depth, '{"situacao":' + "[" * depth + "]" * depth + "}"):
        status, content_type, text = http_client.send("POST", path, body.encode())
        assert status == 400, f"{status} at depth {depth}: {text[:300]}"
        assert content_type.startswith("application/json")


@pytest.mark.parametrize("path", ["/api/v1/eventos", "/api/v1/episodios/{value}", "/admin/query/{tenant}/mandates",
                                  "/admin/query/{tenant}/reviews/{value}"])
def test_fuzzed_queries_and_path_ids_never_cause_a_5xx(fuzz_target: dict[str, Any], path: str) -> None:
    client: TenantClient = fuzz_target["client"]
    http_client = KeepAliveClient(client.gateway.url, client.public if path.startswith("/api") else client.admin)
    keys = st.sampled_from(["tipo", "entidade", "limit", "offset", "status", "agentId", "x"])

    @FUZZ
    @given(value=st.text(min_size=1, max_size=300), params=st.dictionaries(keys, st.text(max_size=300), max_size=4))
    def probe(value: str, params: dict[str, str]) -> None:
        url = path.format(value=quote(value, safe=""), tenant=client.tenant) + "?" + urlencode(params)
        status, _, text = http_client.send("GET", url)
        assert status < 500, f"{status} for {url}: {text[:500]}"

    probe()


async def test_instances_are_capped_and_evicted_when_idle_without_losing_state(
        gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory({"LIBERVIA_RUNTIME__MAX_INSTANCES": "2", "LIBERVIA_RUNTIME__IDLE_TTL_S": "0.5"})
    clients = [await TenantClient.create(gateway, f"cap-{i}") for i in range(3)]
    episodes = [(await _decide(client))["episodio_id"] for client in clients]
    _, _, listed = await gateway.request("GET", "/admin/instances", gateway.admin_token)
    assert listed["activeCount"] <= 2 and listed["evictions"]["capacity"] >= 1
    # An evicted tenant comes back with its state, rebuilt from its log.
    for client, episodio_id in zip(clients, episodes, strict=True):
        status, body = await client.api("GET", f"/episodios/{episodio_id}")
        assert status == 200 and body["estado"] == "DECIDIDO"
    for _ in range(200):  # the idle sweeper runs in the background; wait for it, however long it takes
        _, _, listed = await gateway.request("GET", "/admin/instances", gateway.admin_token)
        if listed["activeCount"] == 0:
            break
        await asyncio.sleep(0.1)
    assert listed["activeCount"] == 0 and listed["evictions"]["idle"] >= 1
    status, _, tenants = await gateway.request("GET", "/admin/query/tenants", gateway.admin_token)
    assert status == 200 and [t["mandates"] for t in tenants] == [{"active": 0, "suspended": 0}] * 3
