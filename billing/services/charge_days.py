"""Paid and failed charges per day, for the console's chart: the attempts of each calendar
day in one zone (by ``created_at``, the billing clock), counted by the database in one
statement whatever the number of charges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from billing.db.tables import Charge
from billing.domain.charges import ChargeStatus

DAYS = 60
COUNTED = (str(ChargeStatus.PAID), str(ChargeStatus.FAILED))


@dataclass(frozen=True)
class Day:
    day: date
    paid: int = 0
    failed: int = 0


def day_bounds(today: date, days: int, zone: ZoneInfo) -> list[datetime]:
    """Midnights (UTC) from ``days - 1`` days before ``today`` to the one after it."""
    first = today - timedelta(days=days - 1)
    return [_midnight(first + timedelta(days=n), zone) for n in range(days + 1)]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def charges_per_day(session: Session, now: datetime, zone: ZoneInfo, days: int = DAYS) -> list[Day]:
    """The last ``days`` days up to today (``now`` in ``zone``), oldest first."""
    today = now.astimezone(zone).date()
    bounds = day_bounds(today, days, zone)
    bucket = case(*((Charge.created_at < end, index) for index, end in enumerate(bounds[1:])))
    inner = (
        select(bucket.label("day"), Charge.status.label("status"))
        .where(
            Charge.created_at >= bounds[0],
            Charge.created_at < bounds[-1],
            Charge.status.in_(COUNTED),
        )
        .subquery()
    )
    query = select(inner.c.day, inner.c.status, func.count()).group_by(inner.c.day, inner.c.status)
    counts = {(int(day), str(status)): int(n) for day, status, n in session.execute(query)}
    first = today - timedelta(days=days - 1)
    return [
        Day(first + timedelta(days=n), counts.get((n, "paid"), 0), counts.get((n, "failed"), 0))
        for n in range(days)
    ]
