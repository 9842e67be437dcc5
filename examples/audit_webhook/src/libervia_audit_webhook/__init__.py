"""Forward every tenant's audit events to a webhook (an example plugin).

Events are read from each tenant's event log (the same entries ``/api/v1/eventos`` serves, hash chain included)
and POSTed in order, in batches, as ``{"tenantId": ..., "events": [...]}``, with the header
``X-Libervia-Delivery: <tenant>:<first seq>-<last seq>`` so a receiver can drop a duplicate: delivery is
at-least-once (the cursor of a tenant moves only after its batch was accepted).

* A 2xx answer accepts the batch. Connection errors, timeouts, 429 and 5xx are retried up to ``max_attempts``
  times, waiting ``backoff_initial_s``, then twice as long each time, never more than ``backoff_max_s``.
* A batch that exhausts its attempts, or gets any other 4xx (the receiver will never take it), is appended to the
  dead-letter file (``dead-letter.jsonl``: one JSON object per line with the tenant, the events, the attempts and
  the last error, fsync'd) and the cursor moves on, so one bad batch never stops the stream.
* New events wake the forwarder at once (the ``eventlog_append`` telemetry event); it also polls every
  ``poll_interval_s`` and catches up on start-up. Cursors live in ``cursors.json`` (written atomically).

Settings::

    [default.plugin.audit_webhook]
    url = "https://siem.example.com/libervia"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
from loguru import logger

from libervia import hookimpl
from libervia.gateway import Gateway
from libervia.routing import schema_resource
from libervia.telemetry import EVENTLOG_APPEND

PLUGIN_NAME = "audit_webhook"
RETRIED_STATUSES = frozenset({408, 425, 429})


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DeliveryFailed(Exception):
    def __init__(self, attempts: int, last_error: str) -> None:
        super().__init__(last_error)
        self.attempts = attempts
        self.last_error = last_error


class Forwarder:
    def __init__(self, gateway: Gateway, config: dict[str, Any]) -> None:
        self.gateway = gateway
        self.config = config
        self.state_dir = Path(config["state_dir"] or gateway.settings.base_dir / "plugins" / PLUGIN_NAME)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cursor_path = self.state_dir / "cursors.json"
        self.dead_letter_path = self.state_dir / "dead-letter.jsonl"
        self.cursors: dict[str, int] = (json.loads(self.cursor_path.read_text("utf-8"))
                                        if self.cursor_path.exists() else {})
        self.pending: set[str] = set()
        self.wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config["timeout_s"]))
        self.pending.update(await self.gateway.storage.events.tenant_ids())
        self.wake.set()
        self.task = asyncio.create_task(self.run(), name="audit-webhook")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.session is not None:
            await self.session.close()

    def notify(self, tenant_id: str) -> None:
        self.pending.add(tenant_id)
        self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config["poll_interval_s"])
            self.wake.clear()
            tenants, self.pending = self.pending or set(self.cursors), set()
            for tenant_id in sorted(tenants):
                try:
                    await self.forward_tenant(tenant_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.opt(exception=True).error(f"audit_webhook: forwarding {tenant_id} failed; retried later")
                    self.pending.add(tenant_id)

    async def forward_tenant(self, tenant_id: str) -> None:
        if not self.gateway.registry.is_registered(tenant_id):
            return
        log = await self.gateway.runtime.event_log(tenant_id)
        while True:
            start = self.cursors.get(tenant_id, 0) + 1
            batch = [entry async for entry in log.entries(start, start + self.config["batch_size"] - 1)]
            if not batch:
                return
            try:
                await self.deliver(tenant_id, batch)
            except DeliveryFailed as failed:
                self.dead_letter(tenant_id, batch, failed)
            self.advance(tenant_id, batch[-1]["seq"])

    async def deliver(self, tenant_id: str, batch: list[dict[str, Any]]) -> None:
        assert self.session is not None
        body = json.dumps({"tenantId": tenant_id, "events": batch}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Libervia-Delivery": f"{tenant_id}:{batch[0]['seq']}-{batch[-1]['seq']}"}
        delay = self.config["backoff_initial_s"]
        last_error = ""
        for attempt in range(1, self.config["max_attempts"] + 1):
            try:
                async with self.session.post(self.config["url"], data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        return
                    last_error = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in RETRIED_STATUSES:
                        raise DeliveryFailed(attempt, last_error)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.config["max_attempts"]:
                logger.warning(f"audit_webhook: {tenant_id} batch {headers['X-Libervia-Delivery']} attempt "
                               f"{attempt} failed ({last_error}); retrying in {delay:.2f}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config["backoff_max_s"])
        raise DeliveryFailed(self.config["max_attempts"], last_error)

    def dead_letter(self, tenant_id: str, batch: list[dict[str, Any]], failed: DeliveryFailed) -> None:
        record = {"tenantId": tenant_id, "firstSeq": batch[0]["seq"], "lastSeq": batch[-1]["seq"],
                  "attempts": failed.attempts, "lastError": failed.last_error, "failedAt": time.time(),
                  "events": batch}
        with open(self.dead_letter_path, "ab") as handle:
            handle.write(json.dumps(record).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        logger.error(f"audit_webhook: {tenant_id} events {batch[0]['seq']}-{batch[-1]['seq']} dead-lettered "
                     f"after {failed.attempts} attempt(s): {failed.last_error}")

    def advance(self, tenant_id: str, seq: int) -> None:
        self.cursors[tenant_id] = seq
        write_atomically(self.cursor_path, json.dumps(self.cursors, sort_keys=True).encode())


_FORWARDERS: dict[int, Forwarder] = {}


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return schema_resource(__name__, "settings.schema.json")


@hookimpl
async def libervia_startup(gateway: Gateway) -> None:
    forwarder = Forwarder(gateway, gateway.plugin_config(PLUGIN_NAME))
    await forwarder.start()
    _FORWARDERS[id(gateway)] = forwarder


@hookimpl
async def libervia_shutdown(gateway: Gateway) -> None:
    forwarder = _FORWARDERS.pop(id(gateway), None)
    if forwarder is not None:
        await forwarder.stop()


@hookimpl
def libervia_count_event(gateway: Gateway, name: str, labels: dict[str, str]) -> None:
    if name == EVENTLOG_APPEND:
        forwarder = _FORWARDERS.get(id(gateway))
        if forwarder is not None:
            forwarder.notify(labels.get("tenant_id", ""))
