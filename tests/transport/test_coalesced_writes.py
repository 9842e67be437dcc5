"""What a connection is sent during one turn of the event loop leaves at the end of that turn
(libervia.coalesced_writes), over real TCP connections, on both event loops (conftest.py). Through a real gateway:
tests/edge/test_coalesced_writes_gateway.py."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator

import pytest

from libervia.coalesced_writes import SEND_AT_BYTES, CoalescedTransport, WriteBatch

EOF_MARK = b"<EOF>"


@contextlib.asynccontextmanager
async def connected(batch: WriteBatch | None = None) -> AsyncIterator[tuple[CoalescedTransport, socket.socket]]:
    """A real TCP connection: this side's transport, held through ``batch``, and the peer as a plain socket;
    both closed at the end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol,
                                                                         *listener.getsockname())
        peer, _ = listener.accept()
    peer.setblocking(False)
    held = CoalescedTransport(transport, batch or WriteBatch(asyncio.get_running_loop()))  # type: ignore[arg-type]
    try:
        yield held, peer
    finally:
        held.close()
        peer.close()


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


async def test_what_a_turn_writes_leaves_together_at_its_end() -> None:
    async with connected() as (transport, peer):
        transport.write(b"one ")
        transport.writelines([b"two ", bytearray(b"three")])
        assert transport.get_write_buffer_size() == len(b"one two three")
        # Loopback delivers a sent byte before send() returns: a write that was not held would be here already.
        assert arrived(peer) == b""
        await end_of_turn()
        assert arrived_within(peer, 13) == b"one two three"


@pytest.mark.parametrize("ending", ["close", "write_eof"])
async def test_closing_or_half_closing_sends_what_is_held_first(ending: str) -> None:
    async with connected() as (transport, peer):
        transport.write(b"last words")
        getattr(transport, ending)()
        assert await arrived_eventually(peer, 11 + len(EOF_MARK)) == b"last words" + EOF_MARK


async def test_abort_drops_what_is_held() -> None:
    async with connected() as (transport, peer):
        transport.write(b"never sent")
        transport.abort()
        assert await arrived_eventually(peer, 1) == EOF_MARK


async def test_a_large_body_is_sent_at_once_so_flow_control_sees_it() -> None:
    async with connected() as (transport, peer):
        transport.write(b"x" * (SEND_AT_BYTES - 1))
        assert arrived(peer) == b""
        transport.write(b"y")
        assert transport.get_write_buffer_size() < SEND_AT_BYTES
        received = arrived_within(peer, SEND_AT_BYTES)   # the loop has not turned
        assert received == b"x" * (SEND_AT_BYTES - 1) + b"y"


async def test_a_buffer_reused_after_write_is_sent_as_it_was() -> None:
    async with connected() as (transport, peer):
        buffer = bytearray(b"first")
        transport.write(memoryview(buffer))
        buffer[:] = b"LATER"
        await end_of_turn()
        assert arrived_within(peer, 5) == b"first"


async def test_a_refused_write_does_not_hold_back_the_other_connections() -> None:
    batch = WriteBatch(asyncio.get_running_loop())
    async with connected(batch) as (broken, broken_peer), connected(batch) as (fine, fine_peer):
        broken.write_eof()
        broken.write(b"after eof")  # the transport refuses it, but only once the turn's bytes are sent
        fine.write(b"hello")
        await end_of_turn()
        assert arrived_within(fine_peer, 5) == b"hello"
        assert broken.is_closing()
        assert b"after eof" not in await arrived_eventually(broken_peer, 1)
