"""Fixtures shared by every suite: real gateway processes, and the real PostgreSQL and Redis servers."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess

IN_CI = os.environ.get("CI", "").lower() == "true"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a backing server is missing locally; under CI=true a missing server is a failure."""
    if service_reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} at {host}:{port} is required under CI=true but is not reachable")
    pytest.skip(f"{name} at {host}:{port} is not reachable")


@pytest.fixture
def unique_id() -> Callable[[str], str]:
    """Tenant ids that never collide between tests sharing one gateway."""
    return lambda prefix="t": f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the tests that only need isolation by tenant id (fast)."""
    base = tmp_path_factory.mktemp("shared") / "data"
    gateway = GatewayProcess(base).start()
    yield gateway
    gateway.kill()


@pytest.fixture
def gateway_server(shared_gateway: GatewayProcess) -> GatewayProcess:
    if shared_gateway.proc is None or shared_gateway.proc.poll() is not None:
        shared_gateway.start()
    return shared_gateway


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start dedicated gateways (own BASE_DIR unless given, own settings); all are killed after the test."""
    started: list[GatewayProcess] = []

    def start(extra_env: dict[str, str] | None = None, base_dir: Path | None = None, *, run: bool = True,
              args: tuple[str, ...] = ()) -> GatewayProcess:
        gateway = GatewayProcess(base_dir or tmp_path / f"data{len(started)}", extra_env, args=args)
        started.append(gateway)
        return gateway.start() if run else gateway

    yield start
    for gateway in started:
        gateway.kill()


def postgres_test_dsn() -> str:
    """The test database (skips locally when PostgreSQL is down; fails under CI=true)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def redis_test_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def postgres_dsn() -> str:
    return postgres_test_dsn()


@pytest.fixture
def redis_url() -> str:
    return redis_test_url()
