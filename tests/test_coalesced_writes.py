"""What a connection is sent during one turn of the event loop leaves at the end of that turn
(libervia.coalesced_writes): over real TCP connections on both event loops the gateway runs on, and through a real
gateway."""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from libervia.coalesced_writes import SEND_AT_BYTES, CoalescedTransport, WriteBatch
from tests.core import bodies
from tests.gateway_process import GatewayProcess

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
EOF_MARK = b"<EOF>"


def run_on(loop_kind: str, test: Callable[[], Awaitable[Any]]) -> Any:
    loop = LOOPS[loop_kind]()
    try:
        return loop.run_until_complete(test())
    finally:
        loop.close()


async def connection(batch: WriteBatch) -> tuple[CoalescedTransport, socket.socket]:
    """A real TCP connection: this side's transport, held through ``batch``, and the peer as a plain socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol,
                                                                         *listener.getsockname())
        peer, _ = listener.accept()
    peer.setblocking(False)
    return CoalescedTransport(transport, batch), peer  # type: ignore[arg-type]


def arrived(peer: socket.socket) -> bytes:
    """What the peer has received so far, without waiting (and EOF_MARK once the connection ended)."""
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            break
        except ConnectionResetError:
            chunks.append(EOF_MARK)
            break
        if not chunk:
            chunks.append(EOF_MARK)
            break
        chunks.append(chunk)
    return b"".join(chunks)


def arrived_within(peer: socket.socket, expected: int, seconds: float = 5.0) -> bytes:
    """What the peer received once ``expected`` bytes (EOF counting as its mark) arrived, waiting without letting
    the event loop turn."""
    received = b""
    while len(received) < expected and EOF_MARK not in received:
        if not select.select([peer], [], [], seconds)[0]:
            break
        received += arrived(peer)
    return received


async def arrived_eventually(peer: socket.socket, expected: int, seconds: float = 5.0) -> bytes:
    """Like :func:`arrived_within`, letting the event loop turn (closing a transport takes a turn or two)."""
    received = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while len(received) < expected and EOF_MARK not in received and loop.time() < deadline:
        await asyncio.sleep(0.005)
        received += arrived(peer)
    return received


async def end_of_turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_what_a_turn_writes_leaves_together_at_its_end(loop_kind: str) -> None:
    async def scenario() -> None:
        batch = WriteBatch(asyncio.get_running_loop())
        transport, peer = await connection(batch)
        transport.write(b"one ")
        transport.writelines([b"two ", bytearray(b"three")])
        assert transport.get_write_buffer_size() == len(b"one two three")
        # Loopback delivers a sent byte before send() returns: a write that was not held would be here already.
        assert arrived(peer) == b""
        await end_of_turn()
        assert arrived_within(peer, 13) == b"one two three"
        transport.close()
        peer.close()

    run_on(loop_kind, scenario)


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("ending", ["close", "write_eof"])
def test_closing_or_half_closing_sends_what_is_held_first(loop_kind: str, ending: str) -> None:
    async def scenario() -> None:
        transport, peer = await connection(WriteBatch(asyncio.get_running_loop()))
        transport.write(b"last words")
        getattr(transport, ending)()
        assert await arrived_eventually(peer, 11 + len(EOF_MARK)) == b"last words" + EOF_MARK
        transport.close()
        peer.close()

    run_on(loop_kind, scenario)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_abort_drops_what_is_held(loop_kind: str) -> None:
    async def scenario() -> None:
        transport, peer = await connection(WriteBatch(asyncio.get_running_loop()))
        transport.write(b"never sent")
        transport.abort()
        assert await arrived_eventually(peer, 1) == EOF_MARK
        peer.close()

    run_on(loop_kind, scenario)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_large_body_is_sent_at_once_so_flow_control_sees_it(loop_kind: str) -> None:
    async def scenario() -> None:
        transport, peer = await connection(WriteBatch(asyncio.get_running_loop()))
        transport.write(b"x" * (SEND_AT_BYTES - 1))
        assert arrived(peer) == b""
        transport.write(b"y")
        assert transport.get_write_buffer_size() < SEND_AT_BYTES
        received = arrived_within(peer, SEND_AT_BYTES)   # the loop has not turned
        assert received == b"x" * (SEND_AT_BYTES - 1) + b"y"
        transport.close()
        peer.close()

    run_on(loop_kind, scenario)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_buffer_reused_after_write_is_sent_as_it_was(loop_kind: str) -> None:
    async def scenario() -> None:
        transport, peer = await connection(WriteBatch(asyncio.get_running_loop()))
        buffer = bytearray(b"first")
        transport.write(memoryview(buffer))
        buffer[:] = b"LATER"
        await end_of_turn()
        assert arrived_within(peer, 5) == b"first"
        transport.close()
        peer.close()

    run_on(loop_kind, scenario)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_refused_write_does_not_hold_back_the_other_connections(loop_kind: str) -> None:
    async def scenario() -> None:
        batch = WriteBatch(asyncio.get_running_loop())
        broken, broken_peer = await connection(batch)
        fine, fine_peer = await connection(batch)
        broken.write_eof()
        broken.write(b"after eof")  # the transport refuses it, but only once the turn's bytes are sent
        fine.write(b"hello")
        await end_of_turn()
        assert arrived_within(fine_peer, 5) == b"hello"
        assert broken.is_closing()
        assert b"after eof" not in await arrived_eventually(broken_peer, 1)
        fine.close()
        for peer in (broken_peer, fine_peer):
            peer.close()

    run_on(loop_kind, scenario)


RESPONSE_HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n", re.S)


def read_responses(sock: socket.socket, count: int) -> tuple[list[tuple[int, dict[str, str]]], bytes]:
    """``count`` responses read off ``sock`` (status, headers), and what followed them."""
    buffer, responses = b"", []
    sock.settimeout(10)
    while len(responses) < count:
        match = RESPONSE_HEAD.match(buffer)
        if match:
            headers = dict(line.decode().split(": ", 1) for line in match.group(2).split(b"\r\n"))
            length = int(headers["Content-Length"])
            if len(buffer) >= match.end() + length:
                responses.append((int(match.group(1)), headers))
                buffer = buffer[match.end() + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection ended after {len(responses)} responses"
        buffer += chunk
    return responses, buffer


def test_pipelined_requests_get_their_responses_in_order_through_the_gateway(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data").start()
    try:
        ids = [f"pipelined-{n}" for n in range(12)]
        requests = b"".join(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: {rid}\r\n\r\n".encode() for rid in ids)
        closing = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-Id: last\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(requests + closing)
            responses, rest = read_responses(sock, len(ids) + 1)
            while chunk := sock.recv(65536):  # the server closes after the last answer
                rest += chunk
        assert [headers["X-Request-Id"] for _, headers in responses] == [*ids, "last"]
        assert [status for status, _ in responses] == [200] * len(ids) + [404]
        assert rest == b""
    finally:
        gateway.stop()


async def test_a_streamed_export_larger_than_what_is_held_arrives_whole_through_the_gateway(tmp_path: Path) -> None:
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
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(b"GET /test/busy?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)   # the handler is holding the loop now; its answer comes after this end of stream
            sock.shutdown(socket.SHUT_WR)
            responses, rest = read_responses(sock, 1)
        assert responses[0][0] == 200
        assert rest == b""
    finally:
        gateway.stop()
