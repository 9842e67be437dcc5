"""Issue 10.3: a hostile body costs its sender, not the gateway. Through a real ``libervia serve`` process.

A public key posts 800 KB to ``/api/v1/decisoes`` with 50,000 bad items. Before, the answer was a 5.4 MB 400
after more than a second of event-loop time per request, ``/health`` waited behind three of them and RSS grew by
hundreds of MB for good. Now the details stop at 50 (plus one entry saying the rest were not listed), messages
are cut, the work runs off the event loop, and memory comes back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import orjson

from libervia.schemas import MAX_DETAILS
from tests.gateway_process import GatewayProcess

HOSTILE = orjson.dumps({"situacao": {"alternativas": [{"descricao": 1}] * 50_000}, "protocolo": 1})


def rss_mb(gateway: GatewayProcess) -> float:
    assert gateway.proc is not None
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def test_hostile_bodies_are_bounded_and_do_not_stall_health(
        gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory()
    await gateway.create_tenant("hostile")
    token = await gateway.create_key("hostile", "public")
    head = (f"POST /api/v1/decisoes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(HOSTILE)}\r\n\r\n").encode()

    # One first, alone: the answer is bounded and says that more violations were not listed.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(head + HOSTILE)
    status, body = await read_response(reader)
    writer.close()
    error = json.loads(body)
    assert status == 400 and error["code"] == "VALIDATION_ERROR"
    assert len(error["details"]) == MAX_DETAILS + 1
    assert error["details"][-1]["path"] == "$" and "not listed" in error["details"][-1]["message"]
    assert all(len(d["message"]) <= 300 for d in error["details"])
    assert len(body) < 16_000
    idle = rss_mb(gateway)

    # Three at once: every byte but the last is sent first, so that the three bodies complete together; then
    # /health is asked on a connection of its own. It must be answered before any of the three: their work
    # does not hold the event loop.
    hostile = [await asyncio.open_connection("127.0.0.1", gateway.port) for _ in range(3)]
    health_reader, health_writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    for _, w in hostile:
        w.write(head + HOSTILE[:-1])
        await w.drain()
    await asyncio.sleep(0.2)  # not measured: lets the server take in the bodies
    for _, w in hostile:
        w.write(HOSTILE[-1:])
    for _, w in hostile:
        await w.drain()
    await asyncio.sleep(0.02)  # not measured: the three are now being parsed
    health_writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    order: list[str] = []

    async def answer(name: str, r: asyncio.StreamReader) -> tuple[int, bytes]:
        result = await read_response(r)
        order.append(name)
        return result

    results = await asyncio.gather(answer("health", health_reader),
                                   *(answer(f"hostile{i}", r) for i, (r, _) in enumerate(hostile)))
    for _, w in [*hostile, (health_reader, health_writer)]:
        w.close()
    assert results[0][0] == 200
    assert order[0] == "health", order
    for status, body in results[1:]:
        assert status == 400 and len(body) < 16_000
        assert len(json.loads(body)["details"]) == MAX_DETAILS + 1

    # Memory comes back to its level (before: +215 MB that stayed).
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", gateway.port)
        w.write(head + HOSTILE)
        assert (await read_response(r))[0] == 400
        w.close()
    assert rss_mb(gateway) < idle + 40
    assert (await gateway.request("GET", "/health"))[0] == 200
