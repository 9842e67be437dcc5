"""Logging: one compact JSON object per line on stdout, through loguru.

Keys sit at the top level (``time, level, msg`` plus whatever was bound: ``requestId, method, url, route,
statusCode, responseTimeMs, tenantId, remoteAddr, code``), so ``grep 'statusCode":5' | jq -r .msg`` works.
Values under keys that name a secret are replaced before a line is written, as a last line of defence: code
should never bind a secret in the first place.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any, TextIO

import orjson
from loguru import logger

from libervia.clock import format_iso

_SECRET_KEY = re.compile(r"token|pepper|secret|password|authorization|checkpoint_key", re.IGNORECASE)
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _redact(key: str, value: Any) -> Any:
    if _is_secret_key(key):
        return "[REDACTED]"
    if isinstance(value, str) and "earer" in value:
        return _BEARER.sub("Bearer [REDACTED]", value)
    return value


def render(record: dict[str, Any]) -> bytes:
    line: dict[str, Any] = {
        "time": format_iso(record["time"]),
        "level": record["level"].name.lower(),
        "msg": _redact("msg", record["message"]),
    }
    for key, value in record["extra"].items():
        line[key] = _redact(key, value)
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        import traceback

        line["err"] = {
            "type": exception.type.__name__,
            "stack": "".join(traceback.format_exception(exception.type, exception.value, exception.traceback)),
        }
    return orjson.dumps(line, default=str) + b"\n"


class JsonSink:
    def __init__(self, stream: TextIO) -> None:
        self._buffer = stream.buffer if hasattr(stream, "buffer") else None
        self._stream = stream

    def write(self, message: Any) -> None:
        data = render(message.record)
        if self._buffer is not None:
            self._buffer.write(data)
            self._buffer.flush()
        else:
            self._stream.write(data.decode())
            self._stream.flush()


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log line, ours and the plugins', to ``stream`` (stdout) as JSON at ``level`` and above."""
    logger.remove()
    logger.add(JsonSink(stream or sys.stdout).write, level=level.upper(), format="{message}",
               backtrace=False, diagnose=False)
