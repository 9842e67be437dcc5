"""Wall-clock timestamps in the one format the API uses: RFC 3339, UTC, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return format_iso(datetime.now(UTC))


def format_iso(moment: datetime) -> str:
    # isoformat is implemented in C; strftime is several times slower, and this runs for every log line.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive values are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
