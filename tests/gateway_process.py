"""A real gateway in a child process (``python -m libervia serve``), for tests that speak HTTP to it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

REPO_ROOT = Path(__file__).resolve().parent.parent
PEPPER = "test-pepper-" + "p" * 40
ADMIN_TOKEN = "test-admin-token-" + "a" * 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(base_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBERVIA_") and k not in (
        "ADMIN_TOKEN", "BASE_DIR", "PORT", "HOST", "LOG_LEVEL", "CORS_ORIGINS", "NODE_ENV")}
    env.update({
        "LIBERVIA_AUTH_PEPPER": PEPPER,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "BASE_DIR": str(base_dir),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LIBERVIA_ENV": "test",
        # Tests share one client address and send many bad tokens on purpose; the throttle has its own test.
        "LIBERVIA_AUTH__MAX_FAILURES": "1000000",
        "LIBERVIA_SETTINGS_FILE": str(REPO_ROOT / "settings.toml"),
        # so that test plugins (tests.plugins_fixtures.*) can be listed by dotted path
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    return env


class GatewayProcess:
    def __init__(self, base_dir: Path, extra_env: dict[str, str] | None = None, port: int | None = None,
                 args: tuple[str, ...] = (), launcher: tuple[str, ...] = (),
                 serve_args: tuple[str, ...] = ()) -> None:
        self.base_dir = base_dir
        self.port = port or free_port()
        self.env = base_env(base_dir, self.port)
        self.env.update(extra_env or {})
        self.args = args
        self.serve_args = serve_args  # after "serve", e.g. ("--workers", "2")
        self.launcher = launcher  # e.g. ("taskset", "-c", "1") for benchmarks
        self.admin_token = self.env.get("ADMIN_TOKEN", ADMIN_TOKEN)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir.parent / f"gateway-{self.port}-{secrets.token_hex(3)}.log"
        self.err_path = self.log_path.with_suffix(".err")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        with open(self.log_path, "ab") as out, open(self.err_path, "ab") as err:
            command = [*self.launcher, sys.executable, "-m", "libervia", *self.args, "serve", *self.serve_args]
            self.proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=err, cwd=self.base_dir.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.stderr()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become healthy: {self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> GatewayProcess:
        code = self.stop()
        assert code == 0, f"gateway exited with {code}: {self.stderr()}"
        return self.start()

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    async def request(self, method: str, path: str, token: str | None = None, headers: dict[str, str] | None = None,
                      json: Any = None, data: bytes | str | None = None) -> tuple[int, CIMultiDict[str], Any]:
        """One HTTP request; the body comes back parsed when it is JSON, else as text."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url + path, headers=sent, json=json, data=data
        ) as response:
            text = await response.text()
            try:
                body: Any = __import__("json").loads(text)
            except ValueError:
                body = text
            return response.status, CIMultiDict(response.headers), body

    async def create_tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        status, _, body = await self.request("POST", "/admin/tenants", self.admin_token,
                                             json={"id": tenant_id, "name": fields.pop("name", tenant_id), **fields})
        assert status == 201, body
        return body

    async def create_key(self, tenant_id: str, role: str = "public") -> str:
        status, _, body = await self.request("POST", f"/admin/tenants/{tenant_id}/keys", self.admin_token,
                                             json={"role": role})
        assert status == 201, body
        return body["token"]
