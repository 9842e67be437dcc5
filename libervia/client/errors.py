"""Typed errors of :mod:`libervia.client`: every non-2xx answer becomes an :class:`ApiError` subclass."""

from __future__ import annotations

from typing import Any


class LiberviaError(Exception):
    """Base of everything the client raises."""


class TransportError(LiberviaError):
    """The gateway could not be reached, or the connection broke."""


class RequestTimeout(TransportError):
    """No complete answer within the client's timeout."""


class ApiError(LiberviaError):
    """The gateway's error body (API.md §1): ``status``, ``code``, ``message``, ``request_id``, ``details``."""

    status_code: int | None = None

    def __init__(self, status: int, code: str, message: str, request_id: str | None, details: Any = None,
                 body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details
        self.body = body
        self.headers = headers or {}


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class MethodNotAllowed(ApiError):
    status_code = 405


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class UnprocessableEntity(ApiError):
    status_code = 422


class RateLimited(ApiError):
    """429 after the client's retries ran out; ``retry_after`` is the gateway's last advice, in seconds."""

    status_code = 429

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers, self.body)


class ServiceUnavailable(ApiError):
    status_code = 503


class QuotaExceeded(ApiError):
    status_code = 507


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
                                     PayloadTooLarge, UnprocessableEntity, RateLimited, ServiceUnavailable,
                                     QuotaExceeded) if cls.status_code is not None
}


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
    cls = _BY_STATUS.get(status, ApiError)
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return cls(status, body["code"], str(body.get("message", "")), body.get("request_id"), body.get("details"),
                   body, headers)
    text = body if isinstance(body, str) else ""
    return cls(status, f"HTTP_{status}", text[:200] or f"HTTP {status}", headers.get("X-Request-Id"), None, body,
               headers)
