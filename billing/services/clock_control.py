"""Moving the shared test clock (sandbox mode only): set it to a time, or forward by a
duration (``90s``, ``12h``, ``3d``, ``2w``, or calendar ``1 month``, ``1 year``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from billing.clock import Clock, DatabaseClock
from billing.config import Settings
from billing.domain.calendar import shift
from billing.domain.durations import parse_interval, parse_offset
from billing.domain.times import LATEST, in_range
from billing.errors import Conflict, InvalidInput


def sandbox_clock(settings: Settings, clock: Clock) -> DatabaseClock:
    """The shared test clock; Conflict outside sandbox mode."""
    if not settings.sandbox_mode or not isinstance(clock, DatabaseClock):
        raise Conflict("the test clock exists in sandbox mode only (BILLING_SANDBOX=1)")
    return clock


def forward(now: datetime, duration: str, zone: ZoneInfo, field: str = "DURATION") -> datetime:
    """``now`` moved forward by ``duration`` (calendar units in ``zone``)."""
    try:
        moved = _moved(now, duration, zone, field)
    except (OverflowError, ValueError):  # beyond datetime's year 9999
        moved = LATEST
    if not in_range(moved):
        raise InvalidInput(f"{field} {duration!r} would move the clock past 2999")
    return moved


def _moved(now: datetime, duration: str, zone: ZoneInfo, field: str) -> datetime:
    try:
        return now + parse_offset(duration)
    except ValueError:
        pass
    try:
        interval = parse_interval(duration)
    except ValueError:
        raise InvalidInput(
            f"{field} {duration!r} must look like 90s, 12h, 3d, 2w, 1 month or 1 year"
        ) from None
    moved = shift(now, interval, 1, zone)
    if moved <= now:
        raise InvalidInput(f"{field} must move the clock forward")
    return moved if interval.months else now + timedelta(days=interval.days)
