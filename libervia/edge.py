"""The connection layer under the routes: what aiohttp's HTTP protocol does before and around a request.

aiohttp answers requests it cannot parse (a header over the limit, control characters, a bad chunk size, an
unknown method...) from inside its protocol, as ``text/plain`` that echoes the offending line and with a
traceback in its own log: a token in that line would reach the client and stdout. :class:`EdgeProtocol`
replaces that answer with the contract's JSON error body, an ``X-Request-Id``, an access line and a metric,
through the same :class:`~libervia.pipeline.request_scope.RequestScope` every routed request uses, and never
quotes what the client sent.

It also holds the connection-level limits of slow clients (``http.*`` settings): the headers must arrive within
``header_timeout_s`` of their first byte, a body within ``body_timeout_s`` plus its length at
``body_min_bytes_per_s``, and an idle keep-alive connection is closed after ``keepalive_timeout_s``. And it keeps
reading the body of a request whose headers arrived before SIGTERM, so that draining finishes it (aiohttp stops
reading at once, which drops such a request without an answer). And what each connection is sent during a turn
of the event loop leaves at the end of that turn (:mod:`libervia.coalesced_writes`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest
from loguru import logger

from libervia import context
from libervia.coalesced_writes import CoalescedTransport, WriteBatch
from libervia.errors import ApiError
from libervia.pipeline.request_scope import BodyTimeout, RequestScope, new_request_id

UNPARSED_ROUTE = "unparsed"
UNHANDLED_ROUTE = "unhandled"


class HeaderTimeout(HttpProcessingError):
    code = 408
    message = "request headers not received in time"


def parse_error(exc: BaseException | None, status: int) -> ApiError:
    """The contract's error for a request aiohttp's parser refused. Never quotes the request: the parser's own
    message contains the raw line, which may hold a credential."""
    if isinstance(exc, HeaderTimeout):
        return ApiError(408, "REQUEST_TIMEOUT", "The request headers did not arrive in time; the connection is "
                        "closed.")
    if isinstance(exc, BadHttpMethod):
        return ApiError(400, "BAD_REQUEST", "The request line names an unsupported method or is not HTTP.")
    if isinstance(exc, LineTooLong):
        return ApiError(400, "REQUEST_TOO_LARGE", "The request line or a header is longer than allowed.")
    if status == 413:
        return ApiError(413, "PAYLOAD_TOO_LARGE", "The request is larger than allowed.")
    return ApiError(400, "MALFORMED_REQUEST", "The request is not well-formed HTTP (request line, headers, "
                    "framing or encoding).")


class EdgeProtocol(RequestHandler):
    """aiohttp's per-connection protocol with the contract's error answers, slow-client limits and a drain that
    finishes requests whose headers arrived."""

    def __init__(self, manager: Any, *, scope: RequestScope, write_batch: WriteBatch, header_timeout_s: float,
                 body_timeout_s: float, body_min_bytes_per_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._scope = scope
        self._write_batch = write_batch
        self._header_timeout_s = header_timeout_s
        self._body_timeout_s = body_timeout_s
        self._body_min_rate = body_min_bytes_per_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # What this connection is sent leaves at the end of the loop's turn, with the other connections' bytes.
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods.)
        super().connection_made(CoalescedTransport(cast(asyncio.Transport, transport), self._write_batch))

    # --- reading ------------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._header_timed_out:
            return
        if (self._force_close or self._close) and self._request_in_progress and self.transport is not None:
            # Shutting down (aiohttp's pre_shutdown sets _close, shutdown _force_close) makes aiohttp drop every
            # later byte; the request being handled still needs the rest of its body to be answered. A
            # connection that was really force-closed has no transport any more.
            flags = self._force_close, self._close
            self._force_close = self._close = False
            try:
                super().data_received(data)
            finally:
                self._force_close, self._close = flags
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            if self._header_timer is not None:
                self._cancel_header_timer()
        # No request completed: if none was under way either, these bytes start one, and its headers are timed.
        # (What is tested is the state before the bytes: parsing part of a request line or headers changes none
        # of it, and this is asked only when no request completed.)
        elif (self._header_timer is None and data and not self._request_in_progress and self._payload_parser is None
              and not self._messages and self._header_timeout_s > 0 and not self._force_close):
            self._header_timer = self._loop.call_later(self._header_timeout_s, self._headers_too_slow)

    def eof_received(self) -> None:
        # The client has finished sending (a half-close). The event loop closes the transport as soon as this
        # returns, sending what the transport's buffer holds, and nothing after: the bytes held for the end of
        # this turn (an answer completed earlier in the turn) must be in that buffer by then.
        if isinstance(self.transport, CoalescedTransport):
            self.transport.send_held()
        super().eof_received()

    def _process_keepalive(self) -> None:
        # The keep-alive timer closes idle connections silently; one whose request is arriving is the header
        # timer's, which answers 408.
        if self._header_timer is None:
            super()._process_keepalive()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._force_close or self.transport is None:
            return
        # Answer through the same path as a parse error (a 408 the client can read), then stop reading.
        self._header_timed_out = True
        self._messages.append((_ErrInfo(status=408, exc=HeaderTimeout(), message=HeaderTimeout.message),
                               EMPTY_PAYLOAD))
        self._request_count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _handle_request(self, request: BaseRequest, start_time: float | None,
                        request_handler: Any) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # A request without a body (most reads) needs neither the body timer nor the check after it: it gets
        # aiohttp's own coroutine, without a frame of ours around it.
        if not request.body_exists:
            return super()._handle_request(request, start_time, request_handler)
        return self._handle_request_with_body(request, start_time, request_handler)

    async def _handle_request_with_body(self, request: BaseRequest, start_time: float | None,
                                        request_handler: Any) -> tuple[web.StreamResponse, bool]:
        timer = None
        if not request.content.is_eof():
            allowed = self._body_timeout_s + (request.content_length or 0) / self._body_min_rate
            timer = self._loop.call_later(allowed, self._body_too_slow, request)
        try:
            answered = await super()._handle_request(request, start_time, request_handler)
        finally:
            if timer is not None:
                timer.cancel()
        if request.content.exception() is not None:
            # The body failed (undecodable, too slow, cut off): the answer is sent; reading the rest of that body
            # (aiohttp's lingering close) would only raise the same failure again.
            self.force_close()
        return answered

    def finish_response(self, request: BaseRequest, resp: web.StreamResponse,
                        start_time: float | None) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # (Responses are MutableMappings, so isinstance goes through the ABC machinery: a plain Response, the
        # common case, is told apart by its type first.)
        if type(resp) is not web.Response and isinstance(resp, web.HTTPException):
            # Only aiohttp's router answers with its own exceptions (a request target it cannot route at all,
            # such as CONNECT's host:port); every routed request is answered by the request scope.
            resp = self._scope.unrouted_response(request, resp)
        # aiohttp's coroutine itself, not one of ours awaiting it: one frame less on every response.
        return super().finish_response(request, resp, start_time)

    @staticmethod
    def _body_too_slow(request: BaseRequest) -> None:
        if not request.content.is_eof():
            request.content.set_exception(BodyTimeout())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 - aiohttp's signature
        self._cancel_header_timer()
        await super().shutdown(timeout)

    # --- answering what aiohttp could not route -----------------------------------------------------------------

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        started = time.perf_counter()
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        unparsed = isinstance(exc, HttpProcessingError)  # refused by the parser: nothing of it is trustworthy
        if status == 504:  # aiohttp's handler timeout (no exception): not a bug of ours
            error = ApiError(503, "TIMEOUT", "The request could not be completed in time.")
        elif status >= 500 and not unparsed:
            # Something escaped the request scope itself: a bug. The traceback goes to the log (redacted).
            logger.opt(exception=exc).error(f"unhandled {type(exc).__name__} outside the request scope")
            error = ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged with this "
                             "request id.")
        else:
            error = parse_error(exc, status)
        rid = new_request_id()
        state = context.RequestState(rid)
        response = self._scope.error_response(error, rid)
        response.force_close()
        self._scope.decorate_with(request, state, response)
        self._scope.finish(request, state, response, started, error.code,
                           UNPARSED_ROUTE if unparsed else UNHANDLED_ROUTE,
                           method="-" if unparsed else request.method, url="-" if unparsed else request.raw_path)
        if isinstance(exc, HeaderTimeout):
            logger.bind(requestId=rid, remoteAddr=request.remote, code=error.code).info(
                "slow client: request headers not received within {} s; connection closed", self._header_timeout_s)
        return response


class EdgeServer(web.Server):
    """aiohttp's server, making :class:`EdgeProtocol` connections."""

    def __init__(self, handler: Any, *, edge_kwargs: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._edge_kwargs = edge_kwargs
        self._write_batch = WriteBatch(self._loop)

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(self, loop=self._loop, write_batch=self._write_batch, **self._edge_kwargs, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """``AppRunner`` whose server speaks through :class:`EdgeProtocol`."""

    def __init__(self, app: web.Application, *, edge_kwargs: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._edge_kwargs = edge_kwargs

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return EdgeServer(plain.request_handler, request_factory=plain.request_factory, loop=plain._loop,
                          handler_cancellation=plain.handler_cancellation, edge_kwargs=self._edge_kwargs,
                          **plain._kwargs)
