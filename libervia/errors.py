"""Typed errors that carry their HTTP status and machine code.

Handlers, plugins and the Core raise these; one middleware renders every one of them as the JSON error body of
the HTTP contract (``{"error", "code", "message", "request_id", "details"?}``). Anything else that escapes a
handler becomes a 500 ``INTERNAL_ERROR`` whose traceback goes to the log only.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any


class ApiError(Exception):
    """An error a client is meant to see."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.title = title or HTTPStatus(status).phrase
        self.extra = dict(extra or {})

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.title,
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        }
        if self.details is not None:
            body["details"] = self.details
        body.update(self.extra)
        return body


class AuthError(ApiError):
    """Authentication failed (401) or was throttled; ``reason`` feeds ``auth_failures_total{reason}``."""

    def __init__(self, code: str, message: str, *, status: int = 401, tenant_claim: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers=headers)
        self.reason = code
        self.tenant_claim = tenant_claim


def bad_request(code: str, message: str, details: Any = None) -> ApiError:
    return ApiError(400, code, message, details=details)


def validation_error(details: list[dict[str, Any]],
                     message: str = "The request does not match its schema.") -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, details=details)


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def conflict(code: str, message: str, details: Any = None) -> ApiError:
    return ApiError(409, code, message, details=details)


def invalid_state(message: str, details: Any = None) -> ApiError:
    return ApiError(409, "INVALID_STATE", message, details=details)


def domain_error(code: str, message: str, details: Any = None) -> ApiError:
    return ApiError(422, code, message, details=details)


def forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, code, message)


def quota_exceeded(message: str, details: Any = None) -> ApiError:
    """A write past the tenant's ``maxEvents``/``maxStorageMB``: the tenant's doing, so a 403, never a 5xx."""
    return ApiError(403, "QUOTA_EXCEEDED", message, details=details)


class StartupError(Exception):
    """Start-up refused. Each entry of ``problems`` is one line naming the bad setting; exit code 2."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
