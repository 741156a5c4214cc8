"""Reading and writing times as ISO 8601 with an offset."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

# Times the product reads: far enough for any schedule, and far from datetime's year 9999, where
# a period's end or a zone's offset overflows. Outside them a time is refused as input.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
RANGE = "between 1970 and 2999"


def in_range(moment: datetime) -> bool:
    return EARLIEST <= moment < LATEST


def parse_time(text: str, zone: ZoneInfo) -> datetime:
    """Parse ISO 8601 (``2026-01-31T00:30:00+09:00``, ``...Z``) into an aware UTC datetime.

    A time without an offset, or a bare date (midnight), is read in ``zone``: the plan's zone
    for plan commands, BILLING_TIMEZONE otherwise.
    """
    cleaned = text.strip()
    try:
        if len(cleaned) == 10:
            moment = datetime.combine(date.fromisoformat(cleaned), datetime.min.time())
        else:
            moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time such as 2026-01-31T09:00:00+09:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 beyond UTC
        raise ValueError(f"{text!r} is not a time {RANGE}") from None
    if not in_range(moment):
        raise ValueError(f"{text!r} is not a time {RANGE}")
    return moment


def format_time(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """ISO 8601 with the offset of ``zone``, to the second."""
    if moment is None:
        return None
    try:
        return moment.astimezone(zone).isoformat(timespec="seconds")
    except OverflowError:  # a time stored before times were bounded: shown as it is
        return moment.isoformat(timespec="seconds")


_STAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2}|Z)"
)


def localize(value: Any, zone: ZoneInfo) -> Any:
    """``value`` (an event's data, a notice's body) with every ISO 8601 time in it shown in
    ``zone``: the database keeps UTC, a person reads the plan's offset."""
    if isinstance(value, str) and _STAMP.fullmatch(value):
        return format_time(datetime.fromisoformat(value), zone)
    if isinstance(value, dict):
        return {key: localize(item, zone) for key, item in value.items()}
    if isinstance(value, list):
        return [localize(item, zone) for item in value]
    return value
