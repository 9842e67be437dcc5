"""Wall-clock timestamps in the one format the API uses: RFC 3339, UTC, milliseconds, ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_last_stamp: tuple[int, str] = (-1, "")
_last_second: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """Now, as ``2026-11-29T12:00:00.000Z``. Called for every log line and every appended batch; under load many
    calls share a millisecond, so the last one formatted is reused."""
    global _last_stamp
    millis = time.time_ns() // 1_000_000
    last = _last_stamp  # read once: threads call this too
    if millis == last[0]:
        return last[1]
    stamp = format_millis(millis)
    _last_stamp = (millis, stamp)
    return stamp


def format_millis(millis: int) -> str:
    """A Unix time in milliseconds as ``2026-11-29T12:00:00.000Z``. A new millisecond of the last second formatted
    only appends its digits to that second's text (strftime was most of the cost when each call had its own
    millisecond)."""
    global _last_second
    second, fraction = divmod(millis, 1000)
    known = _last_second  # read once: threads call this too
    if second != known[0]:
        known = _last_second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{known[1]}{fraction:03d}Z"


def format_iso(moment: datetime) -> str:
    # isoformat is implemented in C; strftime is several times slower, and this runs for every log line.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive values are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        # Converting now means an instant outside datetime's range (0001-01-01T00:00+14:00) is refused here as
        # a ValueError, not an OverflowError later when it is compared or formatted.
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the representable range of timestamps") from None
