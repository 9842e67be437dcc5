"""The served contract: /openapi.json is valid OpenAPI 3.1, complete, and what real responses look like; /docs
renders it from the gateway's own assets under a self-only Content-Security-Policy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from libervia.schemas import load_schema
from tests.core import bodies
from tests.core.test_core_http import TenantClient
from tests.gateway_process import REPO_ROOT, GatewayProcess

REQUIRED_ERRORS = {"401", "403", "404", "405", "413", "429"}


async def test_served_document_is_valid_complete_and_current(gateway_server: GatewayProcess) -> None:
    status, headers, document = await gateway_server.request("GET", "/openapi.json")
    assert status == 200 and headers["X-Request-Id"]
    validate(document)
    assert document == json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    schemas = document["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert refs and all(ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas for ref in refs)
    operations = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 60
    for path, method, op in operations:
        successes = [status for status in op["responses"] if status[0] in "23"]
        assert len(successes) == 1, (path, method)
        success = op["responses"][successes[0]]
        # A success has a body; a redirect (the console's /admin/ui) says where it points instead.
        assert "X-Request-Id" in success["headers"] and (
            success.get("content") if successes[0][0] == "2" else "Location" in success["headers"]), (path, method)
        if op.get("security"):
            assert REQUIRED_ERRORS <= op["responses"].keys(), (path, method)
            assert "Retry-After" in op["responses"]["429"]["headers"]
        if path.startswith("/api/v1/"):
            assert {"X-RateLimit-Limit", "RateLimit"} <= success["headers"].keys()
    decide = document["paths"]["/api/v1/decisoes"]["post"]["responses"]["201"]
    assert decide["links"]["core_episode"]["parameters"] == {"id": "$response.body#/episodio_id"}


async def test_docs_page_uses_only_its_own_assets(gateway_server: GatewayProcess) -> None:
    status, headers, page = await gateway_server.request("GET", "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in page and "http" not in page  # no inline script, no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(asset.startswith("/docs/") for asset in assets)
    for asset in assets:
        status, asset_headers, body = await gateway_server.request("GET", asset)
        assert status == 200 and body, asset
        assert asset_headers["Content-Security-Policy"] == csp
    _, _, init = await gateway_server.request("GET", "/docs/libervia-init.js")
    assert "SwaggerUIBundle" in init and "/openapi.json" in init
    status, _, body = await gateway_server.request("GET", "/docs/swagger-editor.js")
    assert status == 404 and body["code"] == "NOT_FOUND"
    status, _, body = await gateway_server.request("GET", "/docs/..%2Fsettings.toml")
    assert status == 404


class Recorder:
    """Sends requests and checks each success body against the response schema its route declares."""

    def __init__(self, gateway: GatewayProcess, document: dict[str, Any]) -> None:
        self.gateway, self.document, self.checked = gateway, document, set()

    def _operation(self, method: str, path: str) -> dict[str, Any]:
        bare = path.split("?")[0]
        for template, ops in self.document["paths"].items():
            pattern = "^" + re.sub(r"{\w+}", "[^/]+", template) + "$"
            if re.match(pattern, bare) and method.lower() in ops:
                return ops[method.lower()]
        raise AssertionError(f"{method} {path} is not in the document")

    async def __call__(self, method: str, path: str, token: str | None, json: Any = None) -> Any:
        status, _, body = await self.gateway.request(method, path, token, json=json)
        operation = self._operation(method, path)
        assert str(status) in operation["responses"], (method, path, status, body)
        assert 200 <= status < 300, (method, path, status, body)
        name = operation["operationId"]
        schema = load_schema(f"responses/{self.route_names[name]}")
        problems = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
        assert not problems, (method, path, problems[:3])
        self.checked.add(name)
        return body

    route_names: dict[str, str] = {}


async def test_real_responses_match_their_response_schemas(gateway_server: GatewayProcess,
                                                           unique_id: Callable[[str], str]) -> None:
    _, _, document = await gateway_server.request("GET", "/openapi.json")
    Recorder.route_names = {p.stem.replace(".schema", "").replace(".", "_"): p.stem.replace(".schema", "")
                            for p in (REPO_ROOT / "schemas" / "responses").glob("*.schema.json")}
    call = Recorder(gateway_server, document)
    admin = gateway_server.admin_token
    client = await TenantClient.create(gateway_server, unique_id("shape"))
    t = client.tenant
    decision = await call("POST", "/api/v1/decisoes", client.public, bodies.decisao())
    episodio = decision["episodio_id"]
    await call("GET", f"/api/v1/episodios/{episodio}", client.public)
    await call("POST", "/api/v1/observacoes", client.public, {"episodio_id": episodio})
    await call("POST", f"/api/v1/episodios/{episodio}/encerrar", client.public)
    mandate = await call("POST", f"/admin/tenants/{t}/mandates", client.admin, bodies.mandato())
    await call("POST", "/api/v1/autonomia/avaliar", client.public, bodies.avaliacao())
    recorded = await call("POST", "/api/v1/consequencias", client.public, bodies.consequencia(
        decision["contrato"]["id"], agentId="agente-1", autonomyTriggers={"severidade": "MEDIA",
                                                                          "violou_limites": True}))
    review = recorded["autonomy"]["reviewCaseId"]
    await call("GET", "/api/v1/eventos?limit=3", client.public)
    await call("GET", "/api/v1/eventlog/status", client.public)
    await call("POST", f"/admin/tenants/{t}/reviews/{review}/notes", client.admin, {"notes": "n"})
    await call("POST", f"/admin/tenants/{t}/reviews/{review}/resolve", client.admin,
               {"resolution": "APPROVE", "notes": "ok", "effects": ["RESUME_MANDATE"]})
    second = await call("POST", f"/admin/tenants/{t}/reviews", client.admin,
                        {"consequencia_id": recorded["observacao"]["id"], "motivo": "m"})
    await call("POST", f"/admin/tenants/{t}/reviews/{second['id']}/dismiss", client.admin, {"notes": "no"})
    for action, body in (("suspend", {"reason": "r"}), ("resume", {"reason": "r"}), ("revoke", {"motivo": "r"})):
        await call("POST", f"/admin/tenants/{t}/mandates/{mandate['id']}/{action}", client.admin, body)
    for view in ("mandates", f"mandates/{mandate['id']}", "reviews", f"reviews/{review}", "consequences",
                 f"consequences/{recorded['observacao']['id']}", "dashboard"):
        await call("GET", f"/admin/query/{t}/{view}", client.admin)
    for path in ("/admin/query/tenants", "/admin/query/instances", "/admin/query/metrics",
                 "/admin/query/eventlog?limit=2", f"/admin/query/eventlog?tenantId={t}", "/admin/health",
                 "/admin/instances", "/admin/metrics", "/admin/tenants", f"/admin/tenants/{t}",
                 f"/admin/tenants/{t}/audit/checkpoints", f"/admin/tenants/{t}/audit/export?toSeq=3",
                 f"/admin/tenants/{t}/audit/replay", f"/admin/tenants/{t}/audit/verify",
                 f"/admin/tenants/{t}/audit/verify-fast", f"/admin/tenants/{t}/events?limit=2",
                 f"/admin/tenants/{t}/keys", f"/admin/tenants/{t}/metrics", "/internal/health/operational",
                 "/internal/metrics/json", f"/internal/tenants/{t}/metrics/json", "/metrics", "/health",
                 "/health/ready", "/openapi.json"):
        await call("GET", path, admin)
    other = unique_id("shape-b")
    await call("POST", "/admin/tenants", admin, {"id": other, "name": "B"})
    await call("PATCH", f"/admin/tenants/{other}", admin, {"name": "B2"})
    key = await call("POST", f"/admin/tenants/{other}/keys", admin, {"role": "public"})
    await call("POST", f"/admin/tenants/{other}/keys/rotate", admin, {"role": "public", "revokeOld": False})
    await call("POST", f"/admin/tenants/{other}/keys/{key['keyId']}/revoke", admin)
    await call("POST", f"/admin/tenants/{other}/shutdown", admin)
    await call("POST", f"/admin/tenants/{other}/suspend", admin, {"reason": "x"})
    await call("POST", f"/admin/tenants/{other}/resume", admin, {})
    await call("DELETE", f"/admin/tenants/{other}", admin)
    await call("POST", f"/admin/tenants/{other}/purge", admin)
    await call("POST", "/admin/shutdown-all", admin)
    declared = {op["operationId"] for ops in document["paths"].values() for op in ops.values()
                if "application/json" in next((r for s, r in op["responses"].items() if s.startswith("2")), {})
                .get("content", {}) and not op["operationId"].endswith("_by_path")}
    assert declared == call.checked, sorted(declared ^ call.checked)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs a chromium binary")
def test_docs_page_renders_in_a_browser_without_csp_violations(gateway_server: GatewayProcess,
                                                               tmp_path: Path) -> None:
    result = subprocess.run(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
         f"{gateway_server.url}/docs"], capture_output=True, text=True, timeout=120)
    assert "Content Security Policy" not in result.stderr, result.stderr[-3000:]
    assert 'class="title">Libervia Gateway' in result.stdout
    assert result.stdout.count("opblock-summary-path") >= 60  # every operation is listed
