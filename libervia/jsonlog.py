"""Logging: one compact JSON object per line on stdout.

Every component logs through loguru. The one exception is the per-request access line, written by
:data:`access_log` straight to the same stream in the same format: loguru's record building (frame inspection,
a timezone-aware clock, handler locks) measured about 30 µs per record on our 2-core machines, which alone would
cost a fifth of the gateway's throughput on small requests; the direct path costs about 5 µs.

Keys sit at the top level (``time, level, msg`` plus whatever was bound: ``requestId, method, url, route,
statusCode, responseTimeMs, tenantId, remoteAddr, code``), so ``grep 'statusCode":5' | jq -r .msg`` works.
Values under keys that name a secret are replaced before a line is written, as a last line of defence: code
should never bind a secret in the first place.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from typing import Any, TextIO

import orjson
from loguru import logger

from libervia.clock import format_iso
from libervia.secret_names import BEARER_CREDENTIAL, is_secret_name

# What the log never writes: a value under a key that names a secret (the one predicate of
# libervia.secret_names), a bearer credential inside text, and the exact values of the secrets this process was
# configured with (registered at start-up by :func:`register_secret`).
_known_secrets: list[str] = []
REDACTED = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Never write ``value`` (the admin token, the pepper, a checkpoint key) in any line, wherever it appears."""
    if value and len(value) >= 8 and value not in _known_secrets:
        _known_secrets.append(value)
        _known_secrets.sort(key=len, reverse=True)




def redact_text(text: str) -> str:
    """``text`` without bearer credentials or configured secret values."""
    if "earer" in text.lower():   # the scheme is case-insensitive: bEaReR is a credential too
        text = BEARER_CREDENTIAL.sub("Bearer " + REDACTED, text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(key: str, value: Any) -> Any:
    if is_secret_name(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def dumps_line(fields: dict[str, Any]) -> bytes:
    """One JSON line. Text a client sent may hold bytes that are not UTF-8 (kept as surrogate escapes by the
    HTTP parser); such a line is written with those bytes escaped instead of failing."""
    try:
        return orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return orjson.dumps(printable(fields), default=str, option=orjson.OPT_APPEND_NEWLINE)


def printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


LEVELS = {"trace": 5, "debug": 10, "info": 20, "success": 25, "warning": 30, "error": 40, "critical": 50}


def render_line(time: str, level: str, msg: str, fields: dict[str, Any], err: Any = None) -> bytes:
    line: dict[str, Any] = {"time": time, "level": level, "msg": _redact("msg", msg)}
    for key, value in fields.items():
        line[key] = _redact(key, value)
    if err is not None:
        line["err"] = {key: redact_text(text) for key, text in err.items()}
    return dumps_line(line)


def render(record: dict[str, Any]) -> bytes:
    """A loguru record as one JSON line."""
    err = None
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        err = {
            "type": exception.type.__name__,
            "stack": "".join(traceback.format_exception(exception.type, exception.value, exception.traceback)),
        }
    return render_line(format_iso(record["time"]), record["level"].name.lower(), record["message"],
                       record["extra"], err)


class LineWriter:
    """Writes whole lines to one stream. One ``write`` call per line on the shared binary buffer, whose own lock
    keeps lines from loguru (any thread) and from the access log from interleaving."""

    def __init__(self, stream: TextIO) -> None:
        self._buffer = stream.buffer if hasattr(stream, "buffer") else None
        self._stream = stream

    def write(self, data: bytes) -> None:
        if self._buffer is not None:
            self._buffer.write(data)
            self._buffer.flush()
        else:
            self._stream.write(data.decode())
            self._stream.flush()

    def sink(self, message: Any) -> None:
        self.write(render(message.record))


class AccessLog:
    """The access line of every request, in the same format as every other line, without loguru's overhead.

    Lines produced during one turn of the event loop are written together at the end of that turn: under load
    that is one write system call for many requests instead of one each, and a line still leaves the process
    before the loop waits for anything else.
    """

    def __init__(self) -> None:
        self.writer = LineWriter(sys.stdout)
        self.min_level = LEVELS["info"]
        self._pending: list[bytes] = []

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.min_level

    def write(self, line_fields: dict[str, Any]) -> None:
        """Write one access line: ``line_fields`` holds ``time, level, msg`` and the access keys, in that order."""
        # Access fields are ours and never secret; only the URL could carry a credential a client put there, unless
        # it is the route's own template (a path without parameters or query: code, not client text).
        url = line_fields["url"]
        if url != line_fields["route"] and (_known_secrets or "earer" in url.lower()):
            line_fields["url"] = redact_text(url)
        line = dumps_line(line_fields)
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write at once
                self.writer.write(line)
                return
        self._pending.append(line)

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.writer.write(b"".join(lines))


access_log = AccessLog()


class _StdlibToLoguru(logging.Handler):
    """aiohttp's and asyncio's own loggers (and any library's) become JSON lines through the same redaction.

    Their messages may quote what a client sent (a header line with a token); the redaction in
    :func:`render_line` applies to the message and to the traceback alike.
    """

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        if level not in LEVELS:
            level = "error" if record.levelno >= logging.ERROR else "info"
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        logger.bind(logger=record.name).opt(exception=record.exc_info or None).log(level.upper(), message)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log line, ours, the plugins' and the libraries' (stdlib ``logging``, warnings), to ``stream``
    (stdout) as JSON at ``level`` and above."""
    writer = LineWriter(stream or sys.stdout)
    logger.remove()
    logger.add(writer.sink, level=level.upper(), format="{message}", backtrace=False, diagnose=False)
    access_log.writer = writer
    access_log.min_level = LEVELS[level.lower()]
    # loguru's level numbers are the stdlib's (trace and success sit between them).
    logging.basicConfig(handlers=[_StdlibToLoguru()], level=LEVELS[level.lower()], force=True)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def _log_uncaught(exc_type: type[BaseException], exc: BaseException | None, tb: Any) -> None:
    """A crash is one JSON line too (redacted like every other), not a bare traceback on stderr."""
    logger.opt(exception=(exc_type, exc, tb)).critical(f"uncaught {exc_type.__name__}")
