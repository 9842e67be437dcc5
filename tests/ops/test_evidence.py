"""Evidence collection against a real HTTP server: what the runbook asks for, with every secret redacted."""

from __future__ import annotations

import asyncio
import json
import socket
import tarfile
from pathlib import Path

import pytest
from aiohttp import web

from libervia.ops.evidence import REDACTED, run_evidence

TOKEN = "admin-token-" + "t" * 24
PEPPER = "pepper-" + "p" * 40
DB_PASSWORD = "correct-horse-battery"


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def authorised(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {TOKEN}"


@pytest.fixture
async def gateway_url(aiohttp_server) -> str:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": "1.0.0", "uptime_s": 12})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "checks": {"draining": {"ok": False}}}, status=503)

    async def metrics(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"code": "MISSING_TOKEN"}, status=401)
        return web.Response(text="# TYPE libervia_http_requests_total counter\nlibervia_http_requests_total 3\n")

    async def metrics_json(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"code": "MISSING_TOKEN"}, status=401)
        return web.json_response({"timestamp": "2026-11-29T12:00:00.000Z", "metrics": []})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/internal/metrics", metrics)
    app.router.add_get("/internal/metrics/json", metrics_json)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("LIBERVIA_AUTH_PEPPER", PEPPER)
    monkeypatch.setenv("REPORTING_DB_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("LIBERVIA_PORT_HINT", "3000")


async def test_collects_the_runbook_items_and_redacts_every_secret(gateway_url: str, secret_environment: None,
                                                                   tmp_path: Path):
    log = tmp_path / "gateway.log"
    log.write_text(f'{{"level":"info","msg":"started"}}\n{{"level":"debug","msg":"oops {TOKEN}"}}\n')

    archive = await asyncio.to_thread(run_evidence, gateway_url, TOKEN, tmp_path / "out", log)

    assert archive.parent == tmp_path / "out" and archive.name.startswith("evidence-")
    assert archive.stat().st_mode & 0o077 == 0
    files = members(archive)
    assert json.loads(files["health.json"])["status"] == "ok"
    assert json.loads(files["ready.json"])["checks"]["draining"] == {"ok": False}
    assert b"libervia_http_requests_total 3" in files["metrics.txt"]
    assert json.loads(files["metrics.json"])["metrics"] == []
    assert b"started" in files["gateway.log"]
    for name in ("processes.txt", "disk.txt"):
        assert files[name], name

    env = files["env-filtered.txt"].decode().splitlines()
    assert f"ADMIN_TOKEN={REDACTED}" in env
    assert f"LIBERVIA_AUTH_PEPPER={REDACTED}" in env
    assert f"REPORTING_DB_PASSWORD={REDACTED}" in env
    assert "LIBERVIA_PORT_HINT=3000" in env
    for name, content in files.items():
        for secret in (TOKEN, PEPPER, DB_PASSWORD):
            assert secret.encode() not in content, f"{name} leaks a secret"

    summary = json.loads(files["summary.json"])
    assert summary["items"]["ready.json"] == "ok (HTTP 503)"
    assert summary["items"]["metrics.txt"] == "ok (HTTP 200)"


async def test_without_a_token_the_admin_items_are_skipped(gateway_url: str, tmp_path: Path):
    archive = await asyncio.to_thread(run_evidence, gateway_url, None, tmp_path, None)
    files = members(archive)
    assert "metrics.txt" not in files and "health.json" in files
    assert json.loads(files["summary.json"])["items"]["metrics.txt"].startswith("skipped: ")


def test_an_unreachable_gateway_still_yields_the_system_evidence(tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again on exit: nothing listens there
    archive = run_evidence(f"http://127.0.0.1:{port}", TOKEN, tmp_path, None)
    files = members(archive)
    items = json.loads(files["summary.json"])["items"]
    assert items["health.json"].startswith("error: ")
    assert "disk.txt" in files and items["disk.txt"] == "ok"
