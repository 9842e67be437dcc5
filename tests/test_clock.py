"""``now_iso`` reuses what it formatted before; the text must still be exactly the instant's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libervia import clock


@pytest.mark.parametrize("millis", [[1_764_590_000_000, 1_764_590_000_000, 1_764_590_000_999, 1_764_590_001_000,
                                     1_764_590_001_007, 1_764_589_999_998]])
def test_now_iso_is_the_instant_across_milliseconds_and_seconds(monkeypatch: pytest.MonkeyPatch,
                                                                millis: list[int]) -> None:
    for value in millis:
        monkeypatch.setattr(clock.time, "time_ns", lambda value=value: value * 1_000_000 + 123)
        expected = datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        assert clock.now_iso() == expected


@pytest.mark.parametrize("millis", [0, 999, 1_764_590_000_000, 1_764_590_000_001, 1_764_589_999_999,
                                    253_402_300_799_999])
def test_format_millis_is_the_instant(millis: int) -> None:
    moment = datetime.fromtimestamp(millis // 1000, UTC).replace(microsecond=millis % 1000 * 1000)
    expected = moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    assert clock.format_millis(millis) == expected
