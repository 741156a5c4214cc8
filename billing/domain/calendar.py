"""Billing calendars: when each period of a subscription starts and what it costs.

Pure functions of (plan, anchor, period); every datetime is timezone-aware. Anniversary
periods are computed from the anchor, never from the previous date, so that a Jan 31 anchor
clamps to Feb 28 and returns to Mar 31. Calendar (cron) periods run between fire times of the
plan's cron expression in the plan's zone.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from billing.domain.durations import Interval
from billing.domain.plans import Plan
from billing.domain.state import Period

DST_MARGIN = timedelta(hours=3)  # more than any daylight-saving shift (at most 2 hours)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``moment`` in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _from_wall(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock reading in ``zone`` names, in UTC.

    Daylight saving makes two kinds of readings special. One in the hour repeated when the
    clocks go back names its first occurrence (a fire time there fires once). One in the
    hour skipped when the clocks go forward names the first instant after the gap, as cron
    runs such a job right after the change (a fire time there is never skipped). Readings
    that map to the same instant name one moment, so this mapping never goes backwards.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if _wall(instant, zone) == wall:
        return instant  # an ordinary reading, or the first of a repeated one
    return _end_of_gap(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), instant, zone)


def _end_of_gap(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks jumped forward, between ``before`` and ``after`` (UTC), found
    by halving to the second: the first instant whose UTC offset is the later one."""
    later = after.astimezone(zone).utcoffset()
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == later:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def add_months_clamped(wall: datetime, months: int) -> datetime:
    """Shift a naive wall time by whole months; a missing day clamps to the month's last day."""
    years, month0 = divmod(wall.month - 1 + months, 12)
    year, month = wall.year + years, month0 + 1
    day = min(wall.day, _stdlib_calendar.monthrange(year, month)[1])
    return wall.replace(year=year, month=month, day=day)


def shift(anchor: datetime, interval: Interval, k: int, zone: ZoneInfo) -> datetime:
    """The k-th boundary ``anchor + k * interval`` in the wall clock of ``zone``."""
    wall = _wall(anchor, zone)
    if interval.months:
        wall = add_months_clamped(wall, k * interval.months)
    else:
        wall = wall + timedelta(days=k * interval.days)
    return _from_wall(wall, zone)


def add_days(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """``moment`` plus whole calendar days, keeping the wall-clock time in ``zone``."""
    return _from_wall(_wall(moment, zone) + timedelta(days=days), zone)


def is_fire_time(expr: str, moment: datetime, zone: ZoneInfo) -> bool:
    local = _wall(moment, zone)
    if croniter.match(expr, local) and not local.second and not local.microsecond:
        return _from_wall(local, zone) == moment  # not the second of a repeated reading
    return fire_at_or_before(expr, moment, zone) == moment  # the end of a skipped hour


def next_fire(expr: str, after: datetime, zone: ZoneInfo) -> datetime:
    """The first fire time strictly after ``after``.

    Fire times are computed on the wall clock of ``zone`` and then mapped to instants by
    ``_from_wall``: on the night the clocks go back, a time in the repeated hour fires once;
    on the night they go forward, a time in the skipped hour fires at the end of the gap.
    """
    fires = croniter(expr, _wall(after, zone))
    while True:
        fire = _from_wall(fires.get_next(datetime), zone)
        if fire > after:
            return fire


def fire_at_or_before(expr: str, moment: datetime, zone: ZoneInfo) -> datetime:
    """The last fire time at or before ``moment`` (see ``next_fire``)."""
    start = _wall(moment, zone) + DST_MARGIN  # readings this late may still name earlier instants
    fires = croniter(expr, start + timedelta(seconds=1))
    while True:
        fire = _from_wall(fires.get_prev(datetime), zone)
        if fire <= moment:
            return fire


def fire_at_or_after(expr: str, moment: datetime, zone: ZoneInfo) -> datetime:
    if is_fire_time(expr, moment, zone):
        return moment.astimezone(UTC)
    return next_fire(expr, moment, zone)


def trial_end(plan: Plan, start: datetime) -> datetime | None:
    """When the trial ends (the first charge is due), or None without a trial."""
    return add_days(start, plan.trial_days, plan.zone) if plan.trial_days else None


def first_period(plan: Plan, start: datetime) -> Period:
    """The first charged period of a subscription that starts at ``start``."""
    begin = trial_end(plan, start) or start.astimezone(UTC)
    if plan.interval is not None:
        return Period(begin, shift(begin, plan.interval, 1, plan.zone), 0)
    assert plan.cron is not None
    if plan.prorate_first:
        period = Period(begin, next_fire(plan.cron, begin, plan.zone))
        if period_amount(plan, period) > 0:
            return period
    fire = fire_at_or_after(plan.cron, begin, plan.zone)
    return Period(fire, next_fire(plan.cron, fire, plan.zone))


def following_period(plan: Plan, period: Period, anchor: datetime) -> Period:
    """The period after ``period``; anniversary boundaries come from ``anchor``."""
    if plan.interval is not None:
        cycle = period.cycle + 1
        return Period(
            shift(anchor, plan.interval, cycle, plan.zone),
            shift(anchor, plan.interval, cycle + 1, plan.zone),
            cycle,
        )
    assert plan.cron is not None
    return Period(period.end, next_fire(plan.cron, period.end, plan.zone), period.cycle + 1)


def period_amount(plan: Plan, period: Period) -> int:
    """The price of a period in KRW: the plan amount, prorated when a cron period is partial.

    A partial period [start, next_fire) costs
    ``floor(amount * (next_fire - start) / (next_fire - previous_fire))``, in integers.
    """
    if plan.cron is None or is_fire_time(plan.cron, period.start, plan.zone):
        return plan.amount
    previous = fire_at_or_before(plan.cron, period.start, plan.zone)
    return plan.amount * _micros(period.end - period.start) // _micros(period.end - previous)


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def periods(plan: Plan, start: datetime) -> Iterator[Period]:
    """Every charged period of a new subscription starting at ``start``, first one first."""
    period = first_period(plan, start)
    while True:
        yield period
        period = following_period(plan, period, _anchor_of(plan, start))


def _anchor_of(plan: Plan, start: datetime) -> datetime:
    return trial_end(plan, start) or start.astimezone(UTC)
