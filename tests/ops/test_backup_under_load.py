"""Issue 7 acceptance: a backup taken while 50 clients write, restored after BASE_DIR is wiped, gives chains that all
verify and hold every write acknowledged before the backup started; a tampered archive is refused and touches
nothing. Everything goes through the operator's scripts and a real gateway process."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.core import bodies
from tests.gateway_process import REPO_ROOT, GatewayProcess
from tests.ops.runbook_shell import Operator

TENANTS = 5
DECISION_CLIENTS = 45
KEY_CLIENTS = 5
ACKS_BEFORE_BACKUP = 200
ACKS_AFTER_BACKUP = 50
# The load is the point of the test; the per-tenant rate limit must not shape it.
UNLIMITED = {"rateLimitRpm": 10_000_000}
HANG_GUARD_S = 120


@dataclass(frozen=True)
class Ack:
    """A write the gateway acknowledged with 201, and the ids its response named."""

    tenant: str
    entity_ids: dict[str, str]    # evento -> entidade_id the tenant's log must hold
    token: str | None = None      # for a created key: it must still authenticate after the restore


@dataclass
class Load:
    """Clients writing as fast as the gateway answers, until told to stop."""

    gateway: GatewayProcess
    tokens: dict[str, str]
    acks: list[Ack] = field(default_factory=list)
    refusals: list[tuple[int, object]] = field(default_factory=list)
    in_flight: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _post(self, session: aiohttp.ClientSession, path: str, token: str, body: dict) -> dict | None:
        self.in_flight += 1
        try:
            async with session.post(self.gateway.url + path, json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                payload = await response.json()
                if response.status != 201:
                    self.refusals.append((response.status, payload))
                    return None
                return payload
        finally:
            self.in_flight -= 1

    async def decisions(self, session: aiohttp.ClientSession, tenant: str) -> None:
        while not self.stop.is_set():
            body = await self._post(session, "/api/v1/decisoes", self.tokens[tenant], bodies.decisao())
            if body is not None:
                self.acks.append(Ack(tenant, {"CONTRATO_EMITIDO": body["contrato"]["id"],
                                              "EPISODIO_CRIADO": body["episodio_id"]}))

    async def keys(self, session: aiohttp.ClientSession, tenant: str) -> None:
        while not self.stop.is_set():
            body = await self._post(session, f"/admin/tenants/{tenant}/keys", self.gateway.admin_token,
                                    {"role": "public"})
            if body is not None:
                self.acks.append(Ack(tenant, {"KEY_CREATED": body["keyId"]}, token=body["token"]))

    async def until_acks(self, count: int) -> None:
        # A guard against a gateway that stops answering, not a speed requirement.
        async with asyncio.timeout(HANG_GUARD_S):
            while len(self.acks) < count and not self.refusals:
                await asyncio.sleep(0.01)
        assert not self.refusals, self.refusals[:3]


def logged_entities(base_dir: Path, tenant: str) -> set[tuple[str, str]]:
    log = base_dir / "tenants" / tenant / "eventlog" / "events.jsonl"
    return {(entry["evento"], entry["entidade_id"]) for entry in map(json.loads, log.read_text().splitlines())}


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode, and its bytes for files."""
    return {path.relative_to(root).as_posix(): (path.lstat().st_mode, path.read_bytes() if path.is_file() else None)
            for path in sorted(root.rglob("*"))}


async def run_script(operator: Operator, command: str) -> tuple[int, str, str]:
    """A script run without blocking the event loop, so the clients keep writing while it works."""
    process = await asyncio.create_subprocess_exec("bash", "-c", command, env=operator.env, cwd=REPO_ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(HANG_GUARD_S):
        out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_backup_under_load_restores_every_acknowledged_write(
        gateway_factory: Callable[..., GatewayProcess], unique_id: Callable[[str], str], tmp_path: Path) -> None:
    gateway = gateway_factory()
    operator = Operator(gateway)
    tenants = [unique_id("load") for _ in range(TENANTS)]
    tokens = {}
    for tenant in tenants:
        await gateway.create_tenant(tenant, quotas=UNLIMITED)
        tokens[tenant] = await gateway.create_key(tenant)

    load = Load(gateway, tokens)
    connector = aiohttp.TCPConnector(limit=DECISION_CLIENTS + KEY_CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [asyncio.create_task(load.decisions(session, tenants[n % TENANTS])) for n in range(DECISION_CLIENTS)]
        clients += [asyncio.create_task(load.keys(session, tenants[n % TENANTS])) for n in range(KEY_CLIENTS)]
        try:
            await load.until_acks(ACKS_BEFORE_BACKUP)
            # Taken before the backup process exists: every one of these was answered before it started.
            acked_before = list(load.acks)
            assert load.in_flight > 0
            code, out, err = await run_script(operator, "./scripts/run_backup_frio.sh")
            assert code == 0, err
            await load.until_acks(len(load.acks) + ACKS_AFTER_BACKUP)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    assert not load.refusals, load.refusals[:3]
    archive = Path(out.strip().splitlines()[-1])
    assert gateway.stop() == 0

    shutil.rmtree(gateway.base_dir)
    restored = Operator(gateway, ARCHIVE=str(archive)).ok('./scripts/restore_backup.sh "$ARCHIVE"')
    assert f"verified {TENANTS} tenant chains" in restored
    operator.ok("libervia verify --all --base-dir $BASE_DIR")

    logs = {tenant: logged_entities(gateway.base_dir, tenant) for tenant in tenants}
    missing = [ack for ack in acked_before if not set(ack.entity_ids.items()) <= logs[ack.tenant]]
    assert not missing, f"{len(missing)} of {len(acked_before)} acknowledged writes lost, e.g. {missing[:3]}"
    assert any(ack.token for ack in acked_before) and any(not ack.token for ack in acked_before)

    restarted = gateway_factory(base_dir=gateway.base_dir)
    for tenant in tenants:
        status, _, report = await restarted.request("GET", f"/admin/tenants/{tenant}/audit/verify",
                                                    restarted.admin_token)
        assert status == 200 and report["valid"] is True, report
    statuses = await asyncio.gather(*(restarted.request("GET", "/api/v1/eventlog/status", ack.token)
                                      for ack in acked_before if ack.token))
    assert {status for status, _, _ in statuses} == {200}
    assert restarted.stop() == 0

    # A flipped byte: refused, even with --force, and neither the target nor a fresh directory is touched.
    tampered = tmp_path / "tampered.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    before = snapshot(gateway.base_dir)
    for target, force in ((gateway.base_dir, " --force"), (tmp_path / "fresh", "")):
        result = Operator(gateway, BASE_DIR=str(target), ARCHIVE=str(tampered)).run(
            f'./scripts/restore_backup.sh "$ARCHIVE"{force}')
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert "refused" in result.stderr
    assert snapshot(gateway.base_dir) == before
    assert not (tmp_path / "fresh").exists()
