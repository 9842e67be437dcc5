"""Raw HTTP over a socket, for requests no HTTP client would send (malformed, slow, cut off)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; the last value wins
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(raw: bytes) -> RawResponse | None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return RawResponse(status, headers, body[:length], raw)


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket, head: bool = False) -> RawResponse | None:
    """Read until one whole response arrived (its headers only for ``head``) or the server closed the connection."""
    data = b""
    while True:
        parsed = parse_response(data)
        if parsed is not None and (head or ("content-length" in parsed.headers and len(parsed.body) >= int(
                parsed.headers["content-length"]))):
            return parsed
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            return parse_response(data)
        data += chunk


def read_responses(sock: socket.socket, count: int) -> tuple[list[RawResponse], bytes]:
    """``count`` consecutive responses with a ``Content-Length`` (pipelined answers), and the bytes that followed
    them; fewer responses when the server closed the connection first."""
    data, responses = b"", []
    while len(responses) < count:
        parsed = parse_response(data)
        if parsed is not None and "content-length" in parsed.headers:
            length = int(parsed.headers["content-length"])
            head_length = data.index(b"\r\n\r\n") + 4
            if len(data) >= head_length + length:
                responses.append(RawResponse(parsed.status, parsed.headers, parsed.body,
                                             data[:head_length + length]))
                data = data[head_length + length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return responses, data


def exchange(port: int, data: bytes, timeout: float = 15.0) -> RawResponse | None:
    """Send ``data`` on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_response(sock, head=data.startswith(b"HEAD "))


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the connection (reads return EOF); False if it is still open at the timeout."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
