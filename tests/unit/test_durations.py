from __future__ import annotations

from datetime import timedelta

import pytest

from billing.domain.durations import Interval, Unit, format_offset, parse_interval, parse_offset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 month", Interval(1, Unit.MONTH)),
        ("3 months", Interval(3, Unit.MONTH)),
        ("1 year", Interval(1, Unit.YEAR)),
        ("2 weeks", Interval(2, Unit.WEEK)),
        ("30 days", Interval(30, Unit.DAY)),
        ("7d", Interval(7, Unit.DAY)),
        (" 1  Month ", Interval(1, Unit.MONTH)),
    ],
)
def test_intervals(text: str, expected: Interval) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text", ["month", "1 fortnight", "1.5 months", "-1 month", "0 days", "1m", "", 3]
)
def test_bad_intervals(text: object) -> None:
    with pytest.raises(ValueError, match="interval"):
        parse_interval(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("3 days", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_offsets(text: str, expected: timedelta) -> None:
    assert parse_offset(text) == expected
    assert parse_offset(format_offset(expected)) == expected


@pytest.mark.parametrize("text", ["1 month", "1y", "soon", "1.5d", None])
def test_bad_offsets(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_offset(text)
