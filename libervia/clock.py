"""Wall-clock timestamps in the one format the API uses: RFC 3339, UTC, milliseconds, ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_second_prefix: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """Now, as ``2026-11-29T12:00:00.000Z``. Called for every log line, so the part up to the second is reused
    within a second instead of being formatted again."""
    global _second_prefix
    now = time.time()
    second = int(now)
    if second != _second_prefix[0]:
        _second_prefix = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_prefix[1]}.{int((now - second) * 1000):03d}Z"


def format_iso(moment: datetime) -> str:
    # isoformat is implemented in C; strftime is several times slower, and this runs for every log line.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive values are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
