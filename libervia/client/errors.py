"""Typed errors of :mod:`libervia.client`: every non-2xx answer becomes an :class:`ApiError` subclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class LiberviaError(Exception):
    """Base of everything the client raises."""


class TransportError(LiberviaError):
    """The gateway could not be reached, or the connection broke."""


class RequestTimeout(TransportError):
    """No complete answer within the client's timeout."""


@dataclass(eq=False)
class ApiError(LiberviaError):
    """The gateway's error body (API.md §1): ``status``, ``code``, ``message``, ``request_id``, ``details``.

    Branch on ``status`` and ``code``; :class:`RateLimited` is the one subclass, for its ``retry_after``.
    """

    status: int
    code: str
    message: str
    request_id: str | None
    details: Any = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        suffix = f" (request {self.request_id})" if self.request_id else ""
        super().__init__(f"{self.status} {self.code}: {self.message}{suffix}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(eq=False)
class RateLimited(ApiError):
    """429 after the client's retries ran out; ``retry_after`` is the gateway's last advice, in seconds."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers, self.body)


def retry_after_seconds(headers: dict[str, str], body: Any) -> float | None:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is not None:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    return None


def error_from_response(status: int, body: Any, headers: dict[str, str]) -> ApiError:
    """The typed error for a non-2xx answer; a body that is not the gateway's error JSON still gives one."""
    cls = RateLimited if status == 429 else ApiError
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return cls(status, body["code"], str(body.get("message", "")), body.get("request_id"), body.get("details"),
                   body, headers)
    text = body if isinstance(body, str) else ""
    return cls(status, f"HTTP_{status}", text[:200] or f"HTTP {status}", headers.get("X-Request-Id"), None, body,
               headers)
