"""Coalesced writes (libervia.coalesced_writes) through a real gateway: pipelined answers in order, a streamed body
larger than what a connection holds, and a client that half-closes while its answer is held."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import aiohttp

from libervia.coalesced_writes import SEND_AT_BYTES
from tests.core import bodies
from tests.edge.rawhttp import connect, read_responses
from tests.gateway_process import GatewayProcess


def test_pipelined_requests_get_their_responses_in_order(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data").start()
    try:
        ids = [f"pipelined-{n}" for n in range(12)]
        requests = b"".join(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: {rid}\r\n\r\n".encode() for rid in ids)
        closing = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-Id: last\r\nConnection: close\r\n\r\n"
        with connect(gateway.port) as sock:
            sock.sendall(requests + closing)
            responses, rest = read_responses(sock, len(ids) + 1)
            while chunk := sock.recv(65536):  # the server closes after the last answer
                rest += chunk
        assert [response.headers["x-request-id"] for response in responses] == [*ids, "last"]
        assert [response.status for response in responses] == [200] * len(ids) + [404]
        assert rest == b""
    finally:
        gateway.stop()


async def test_a_streamed_export_larger_than_what_is_held_arrives_whole(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data").start()
    try:
        await gateway.create_tenant("acme")
        token = await gateway.create_key("acme", "public")
        for _ in range(40):
            status, _, body = await gateway.request("POST", "/api/v1/decisoes", token, json=bodies.decisao())
            assert status == 201, body
        async with aiohttp.ClientSession() as session, session.get(
            f"{gateway.url}/admin/tenants/acme/audit/export", headers={
                "Authorization": f"Bearer {gateway.admin_token}", "Accept": "application/x-ndjson"}
        ) as response:
            assert response.status == 200
            received = await response.read()
        assert len(received) > 2 * SEND_AT_BYTES   # more than one connection's held bytes
        lines = received.splitlines()
        entries, manifest = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])["manifest"]
        assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
        assert manifest["count"] == len(entries)
    finally:
        gateway.stop()


def test_an_answer_held_when_the_client_half_closes_is_still_sent(tmp_path: Path) -> None:
    """The client sends its request and then shuts its side down while the handler holds the event loop: the
    answer is held for the end of the turn, the loop then reads the end of the client's stream and closes the
    transport, and held bytes used to be dropped at that close. They go into the transport's buffer first."""
    gateway = GatewayProcess(tmp_path / "data", {
        "LIBERVIA_PLUGINS__LOAD": '["tests.plugins_fixtures.slow_route_plugin"]'}).start()
    try:
        with connect(gateway.port) as sock:
            sock.sendall(b"GET /test/busy?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)   # the handler is holding the loop now; its answer comes after this end of stream
            sock.shutdown(socket.SHUT_WR)
            responses, rest = read_responses(sock, 1)
        assert [response.status for response in responses] == [200]
        assert rest == b""
    finally:
        gateway.stop()
