"""The scope every request passes through: request id, CORS, security headers, error rendering, access log and the
telemetry observation.

It wraps each route's handler directly instead of being an aiohttp middleware: with any middleware at all, aiohttp
builds and runs two extra coroutine layers per request, which measured as a tenth of the cost of a small request.
Requests that match no route reach a catch-all route (:func:`unmatched`) inside the same scope, so 404 and 405 are
JSON too. Common headers are added by :meth:`RequestScope.decorate`: to a returned response before it is sent, and
to a streamed one by :func:`libervia.responses.stream_response` (an ``on_response_prepare`` signal would do both,
but costs an extra awaited call on every response).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_urldispatcher import MatchInfoError
from loguru import logger
from multidict import CIMultiDictProxy

from libervia import context
from libervia.clock import now_iso
from libervia.errors import ApiError, AuthError, quota_exceeded
from libervia.gateway import Gateway
from libervia.jsonlog import access_log, printable
from libervia.pipeline.authentication import ClientAddress
from libervia.pipeline.validation import payload_too_large
from libervia.responses import json_response
from libervia.routing import Handler
from libervia.storage import CorruptStoreError, QuotaExceededError, StorageError
from libervia.telemetry import RequestObservation

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNMATCHED_ROUTE = "unmatched"
CLIENT_CLOSED_STATUS = 499
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-Tenant-Id, X-Request-Id"
CORS_EXPOSE_HEADERS = ("X-Request-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
                       "RateLimit, RateLimit-Policy")


# Generated ids need to be unique, not secret: a random per-process prefix and a counter are unique across
# processes and restarts, and cost far less than reading the system's random source on every request.
_REQUEST_ID_PREFIX = f"req_{secrets.token_hex(5)}"
_request_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):010x}"


# What aiohttp's parser decodes (brotli and zstd only with optional modules we do not require). Anything else
# would reach the handler as undecoded bytes.
DECODABLE_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


def _decodable(headers: CIMultiDictProxy[str]) -> bool:
    values = headers.getall("Content-Encoding")
    return len(values) == 1 and values[0].strip().lower() in DECODABLE_ENCODINGS


class BodyTimeout(asyncio.TimeoutError):
    """The body did not arrive in time (``http.body_timeout_s``; set by :mod:`libervia.edge`). A ``TimeoutError``
    so that aiohttp's lingering read after the answer treats it as the end of the wait, not as a crash."""


def client_aborted() -> ApiError:
    """The client closed the connection before its request was read: its doing, logged at info, never a 5xx.
    Nobody receives the answer; 499 (nginx's "client closed request") labels the access line and the metric."""
    return ApiError(CLIENT_CLOSED_STATUS, "CLIENT_CLOSED_REQUEST", "The client closed the connection before the "
                    "request was received.", title="Client Closed Request")


def error_from_exception(exc: BaseException, request: web.Request) -> ApiError:
    """Map anything a handler raised onto the error body of the HTTP contract."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, web.HTTPException):
        return _http_exception_error(exc, request)
    if isinstance(exc, BodyTimeout):
        return ApiError(408, "REQUEST_TIMEOUT", "The request body did not arrive in time; the connection is closed.",
                        headers={"Connection": "close"})
    if isinstance(exc, HttpProcessingError | RequestPayloadError):
        # A body the parser could not decode (Content-Encoding: gzip with a body that is not, a bad chunk size...).
        # Its message quotes the input, so it is not repeated.
        return ApiError(400, "MALFORMED_REQUEST", "The request body could not be decoded (its Content-Encoding or "
                        "framing is wrong).", headers={"Connection": "close"})
    if isinstance(exc, ConnectionError) and (request.transport is None or request.transport.is_closing()):
        # Only when the client's own connection is gone: a plugin's lost connection to its backend is ours.
        return client_aborted()
    if isinstance(exc, QuotaExceededError):
        return quota_exceeded(str(exc) or "The tenant's storage quota is exhausted.")
    if isinstance(exc, CorruptStoreError):
        logger.opt(exception=exc).error(f"stored data is corrupt: {exc}")
        return ApiError(503, "STORAGE_CORRUPT", "The stored data this request needs cannot be read; nothing was "
                        "applied. Operators: verify the tenant's event log (runbook PROC-007).")
    if isinstance(exc, StorageError):
        logger.opt(exception=exc).error(f"storage unavailable: {exc}")
        return ApiError(503, "STORAGE_UNAVAILABLE", "Storage is unavailable; the request was not applied.")
    logger.opt(exception=exc).error(f"unhandled {type(exc).__name__} in {request.method} {_route_of(request)}")
    return ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged with this request id.")


def _http_exception_error(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 404:
        return ApiError(404, "NOT_FOUND", f"No route matches {request.method} {request.path}.")
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on this path.",
                        headers={"Allow": ", ".join(allowed)})
    if exc.status == 413:
        return payload_too_large(request.app._client_max_size)
    code = exc.reason.upper().replace(" ", "_") if exc.reason else "HTTP_ERROR"
    return ApiError(exc.status, code, exc.text or exc.reason)


def _route_of(request: web.Request) -> str:
    info = request.match_info
    if isinstance(info, MatchInfoError) or info.route.resource is None:
        return UNMATCHED_ROUTE
    return info.route.resource.canonical


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The catch-all route: 405 with ``Allow`` when the path exists under other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name != UNMATCHED_ROUTE:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on this path.",
                       headers={"Allow": ", ".join(sorted(allowed))})
    raise ApiError(404, "NOT_FOUND", f"No route matches {request.method} {request.path}.")


class RequestScope:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.cors_origins = frozenset(gateway.settings.cors_origins)
        self.cors_any = "*" in self.cors_origins
        self.max_body = gateway.settings.max_body_bytes
        self.client_address = ClientAddress.from_settings(gateway.settings)
        # Plugins are all registered before the app is built; with no telemetry plugin, observe nothing at all.
        hook = gateway.pm.hook.libervia_observe_requests
        self.observe_requests = hook if hook.get_hookimpls() else None
        self._finished: list[RequestObservation] = []

    def around(self, handler: Handler, route: str) -> Handler:
        """``handler`` run inside the scope; ``route`` is its template, the label of its logs and metrics.

        The scope is a closure over the route rather than a ``functools.partial`` of a method: aiohttp calls it
        directly, without merging keyword arguments or binding a method on every request."""
        max_body = self.max_body
        decorate_with = self.decorate_with
        finish = self.finish
        error_response = self.error_response
        preflight = self.preflight

        async def scoped(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            headers = request.headers
            given = headers.get(REQUEST_ID_HEADER)  # the client's when it is well-formed, else a new one
            rid = given if given and _VALID_REQUEST_ID.match(given) else new_request_id()
            state = context.RequestState(rid)
            request[context.STATE] = state
            code = ""
            try:
                if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
                    response: web.StreamResponse = preflight(request)
                elif (request.content_length or 0) > max_body:
                    raise payload_too_large(max_body)
                elif "Content-Encoding" in headers and not _decodable(headers):
                    raise ApiError(415, "UNSUPPORTED_CONTENT_ENCODING", "The request body's Content-Encoding is "
                                   f"not one of {', '.join(DECODABLE_ENCODINGS)}.")
                else:
                    response = await handler(request)
            except Exception as exc:  # every error, ours or not, becomes the contract's JSON body
                error = error_from_exception(exc, request)
                code = error.code
                response = error_response(error, rid)
                if state.streamed is not None and state.streamed.prepared:
                    # A streamed answer's status line and part of its body are sent: an error response now would
                    # be written inside that body, and read as the end of a complete one. The connection is cut
                    # instead, so the client sees the body end early (aiohttp then finds it closed and ends the
                    # stream there, logging nothing more); the access line and the metric count the failure the
                    # client was not told about, the failure itself is logged once, above.
                    finish(request, state, response, started, code, route)
                    if request.transport is not None:
                        request.transport.close()
                    return state.streamed
                if isinstance(exc, AuthError) and error.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="libervia"'
            if not response.prepared:
                decorate_with(request, state, response)
            finish(request, state, response, started, code, route)
            return response

        return scoped

    def unrouted_response(self, request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
        """The contract's answer for a request aiohttp's router refused before any route (and so this scope) saw it."""
        started = time.perf_counter()
        rid = new_request_id()
        state = context.RequestState(rid)
        error = (ApiError(404, "NOT_FOUND", "No route matches this request target.") if exc.status == 404
                 else ApiError(exc.status if exc.status < 500 else 400, "BAD_REQUEST", "The request cannot be routed."))
        response = self.error_response(error, rid)
        self.decorate_with(request, state, response)
        self.finish(request, state, response, started, error.code, UNMATCHED_ROUTE)
        return response

    @staticmethod
    def error_response(error: ApiError, rid: str) -> web.Response:
        """The error body as a response. Details may quote client text that is not valid UTF-8 (surrogate
        escapes from a header): it is escaped rather than letting the rendering of an error fail."""
        body = error.body(rid)
        try:
            response = json_response(body, status=error.status, headers=error.headers)
        except (TypeError, orjson.JSONEncodeError):
            response = json_response(printable(body), status=error.status, headers=error.headers)
        if error.headers.get("Connection") == "close":
            response.force_close()
        return response

    def preflight(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return response

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Common headers of every response. Buffered responses get them when the handler returns; a streaming
        handler gets them through :func:`libervia.responses.stream_response` before it sends anything."""
        state = context.state(request)
        state.streamed = response
        self.decorate_with(request, state, response)

    def decorate_with(self, request: web.BaseRequest, state: context.RequestState,
                      response: web.StreamResponse) -> None:
        headers = response.headers
        headers[REQUEST_ID_HEADER] = state.request_id
        headers["Server"] = "libervia"  # the default names aiohttp's and Python's versions
        headers["X-Content-Type-Options"] = "nosniff"
        if "Authorization" in request.headers:
            headers["Cache-Control"] = "no-store"
        if state.rate_limit_headers:
            headers.update(state.rate_limit_headers)
        origin = request.headers.get("Origin")
        if origin and (self.cors_any or origin in self.cors_origins):
            headers["Access-Control-Allow-Origin"] = "*" if self.cors_any else origin
            headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
            if not self.cors_any:
                headers["Vary"] = "Origin"

    def _report_finished(self) -> None:
        finished, self._finished = self._finished, []
        assert self.observe_requests is not None
        self.observe_requests(gateway=self.gateway, observations=finished)

    def finish(self, request: web.BaseRequest, state: context.RequestState, response: web.StreamResponse,
               started: float, code: str, route: str, *, method: str | None = None, url: str | None = None) -> None:
        """Report the request to telemetry and write its access line. ``method``/``url`` replace the request's
        for requests the HTTP parser refused (aiohttp gives those a placeholder ``GET /``)."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        tenant_id = state.tenant_id
        if tenant_id is not None and not self.gateway.registry.is_registered(tenant_id):
            tenant_id = None
        status = response.status
        method = method or request.method
        if self.observe_requests is not None:
            finished = self._finished
            if not finished:
                asyncio.get_running_loop().call_soon(self._report_finished)
            finished.append(RequestObservation(method, route, status, elapsed_ms, tenant_id))
        level = "info" if status < 400 else failure_level(status, code)
        if access_log.enabled(level):
            url = request.raw_path if url is None else url
            access_log.write({
                "time": now_iso(), "level": level,
                "msg": f"{method} {route} {status} {code}" if code else f"{method} {route} {status}",
                "requestId": state.request_id, "method": method, "url": url, "route": route,
                # Hundredths of a millisecond by integer rounding: round(x, 2) goes through decimal conversion,
                # several times the cost, for a figure no one reads to the last digit.
                "statusCode": status, "responseTimeMs": int(elapsed_ms * 100 + 0.5) / 100, "tenantId": tenant_id,
                "remoteAddr": state.client_address or self.client_address.of(request),
                "code": code or None,
            })


def failure_level(status: int, code: str) -> str:
    """The access line's level for a status of 400 or more (below, it is info): error only for a failure the
    server caught (a raised 5xx); a 5xx a handler chose to answer (readiness while draining) and every client-side
    failure with a code are warnings; a client abort, and a 4xx a handler chose to answer, are info."""
    if status == CLIENT_CLOSED_STATUS:
        return "info"
    if status >= 500:
        return "error" if code else "warning"
    return "warning" if code else "info"
