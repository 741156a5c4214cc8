"""The business figures of ``GET /metrics``, read from PostgreSQL (the system of record).

Every figure is read again on every scrape; nothing is kept between scrapes except the
monthly rate of each plan version (versions never change once written).

MRR (monthly recurring revenue, KRW) counts ``active`` and ``past_due`` subscriptions at the
current amount of their plan, normalised to one month with exact rational arithmetic
(``fractions.Fraction``, integers only) and rounded down once, at the end:

- ``N month(s)``: amount / N; ``N year(s)``: amount / (12 N);
- ``N day(s)`` / ``N week(s)``: amount x (mean Gregorian month) / (days per charge), where the
  mean month is 146097 / 4800 days (400 Gregorian years are 146,097 days and 4,800 months);
- cron plans: amount x (fire times in the reference window) / 48, the window being the four
  calendar years 2024-2027 in the plan's zone (one leap year): ``0 10 1 * *`` is 1 charge a
  month, ``0 10 * * 1`` 4.35 charges a month.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from croniter import croniter
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from billing.db.tables import Base, Charge, Notice, PlanRow, PlanVersion, Subscription
from billing.domain.charges import ChargeStatus
from billing.domain.durations import Unit
from billing.domain.plans import Plan
from billing.domain.statuses import CHARGEABLE_STATUSES, SubscriptionStatus
from billing.services.plan_store import plan_from_row
from billing.services.status import due_now

MEAN_MONTH_DAYS = Fraction(146097, 4800)
CRON_WINDOW_YEARS = (2024, 2028)  # [first, last) calendar years counted for cron plans
CRON_WINDOW_MONTHS = 12 * (CRON_WINDOW_YEARS[1] - CRON_WINDOW_YEARS[0])
CRON_MAX_FIRES = 5_000  # beyond this (a cron firing hourly or more), extrapolate
MRR_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
CHARGEABLE = [str(status) for status in CHARGEABLE_STATUSES]


@dataclass(frozen=True)
class BusinessFigures:
    """What ``/metrics`` exposes. Times follow the billing clock (the test clock in sandbox)."""

    charges: Mapping[str, int] = field(default_factory=dict)
    subscriptions: Mapping[str, int] = field(default_factory=dict)
    due_unclaimed: int = 0
    oldest_due_age_seconds: int = 0
    unknown_charges: int = 0
    dunning_backlog: int = 0
    notices_pending: int = 0
    mrr_krw: int = 0
    set_aside: int = 0
    duplicate_payments: int = 0


class MonthlyRates:
    """(plan id, version) -> the plan's amount per month, as an exact fraction. Thread-safe."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, int], Fraction] = {}
        self._lock = threading.Lock()

    def rate(self, plan: Plan) -> Fraction:
        key = (plan.id, plan.version)
        with self._lock:
            cached = self._rates.get(key)
        if cached is None:
            cached = monthly_amount(plan)
            with self._lock:
                self._rates[key] = cached
        return cached


def monthly_amount(plan: Plan) -> Fraction:
    """The plan's full amount normalised to one month (exact; no proration, no trial)."""
    if plan.interval is not None:
        interval = plan.interval
        if interval.unit in (Unit.MONTH, Unit.YEAR):
            return Fraction(plan.amount, interval.months)
        return Fraction(plan.amount) * MEAN_MONTH_DAYS / interval.days
    assert plan.cron is not None
    return Fraction(plan.amount * cron_fires_in_window(plan), CRON_WINDOW_MONTHS)


def cron_fires_in_window(plan: Plan) -> int:
    """Fire times of the plan's cron in the reference window; past ``CRON_MAX_FIRES`` (a
    cron firing every few minutes), the count is extrapolated from the fires seen."""
    assert plan.cron is not None
    start = datetime(CRON_WINDOW_YEARS[0], 1, 1, tzinfo=plan.zone)
    end = datetime(CRON_WINDOW_YEARS[1], 1, 1, tzinfo=plan.zone)
    fires = croniter(plan.cron, start - timedelta(seconds=1))  # fires at or after start
    try:
        first = moment = fires.get_next(datetime)
    except ValueError:  # croniter's "never fires" (CroniterBadDateError)
        return 0
    count = 0
    while moment < end:
        count += 1
        if count == CRON_MAX_FIRES:
            seen = int((moment - first).total_seconds())
            return -(-(count - 1) * int((end - first).total_seconds()) // seen)  # rounded up
        moment = fires.get_next(datetime)
    return count


def mrr(counts: Iterable[tuple[Plan, int]], rates: MonthlyRates) -> int:
    """Sum of subscriptions x monthly rate, rounded down once (integer KRW)."""
    total = sum((rates.rate(plan) * n for plan, n in counts), Fraction(0))
    return int(total)  # int() of a non-negative Fraction rounds down


def business_figures(
    session: Session, now: datetime, wall: datetime, rates: MonthlyRates
) -> BusinessFigures:
    """Every figure of SPEC section 6 at billing time ``now`` (``wall``: the system clock)."""
    return BusinessFigures(
        charges=_by_status(session, Charge.status, [str(s) for s in ChargeStatus]),
        subscriptions=_by_status(
            session, Subscription.status, [str(s) for s in SubscriptionStatus]
        ),
        due_unclaimed=_count(session, Subscription, *_due(now)),
        oldest_due_age_seconds=oldest_due_age(session, now, wall),
        unknown_charges=_count(session, Charge, Charge.status == ChargeStatus.UNKNOWN),
        dunning_backlog=_count(
            session,
            Subscription,
            Subscription.status == SubscriptionStatus.PAST_DUE,
            Subscription.next_charge_at.is_not(None),
        ),
        notices_pending=_count(session, Notice, Notice.status == "pending"),
        mrr_krw=mrr(mrr_counts(session), rates),
        set_aside=_count(session, Subscription, Subscription.set_aside_at.is_not(None)),
        duplicate_payments=_count(session, Charge, Charge.duplicate_of.is_not(None)),
    )


def oldest_due_age(session: Session, now: datetime, wall: datetime) -> int:
    """Seconds since the oldest work item became due and was still not sent to PortOne.

    Items: a due subscription not yet claimed (due since ``next_charge_at``), and a claimed
    charge still pending and ready to send (due since its creation), so that a scheduler
    that is down and workers that are down both show. 0 when nothing waits.
    """
    unclaimed = session.scalar(select(func.min(Subscription.next_charge_at)).where(*_due(now)))
    ready = or_(Charge.resend_at.is_(None), Charge.resend_at <= wall)
    pending = session.scalar(
        select(func.min(Charge.created_at)).where(
            and_(Charge.status == ChargeStatus.PENDING, ready)
        )
    )
    since = [moment for moment in (unclaimed, pending) if moment is not None]
    return max(0, int((now - min(since)).total_seconds())) if since else 0


def mrr_counts(session: Session) -> list[tuple[Plan, int]]:
    """(current version of each plan, number of active or past-due subscriptions on it)."""
    rows = session.execute(
        select(Subscription.plan_id, func.count())
        .where(Subscription.status.in_([str(s) for s in MRR_STATUSES]))
        .group_by(Subscription.plan_id)
    )
    counts = {plan_id: int(n) for plan_id, n in rows}
    if not counts:
        return []
    current = (PlanRow.id == PlanVersion.plan_id) & (PlanRow.current_version == PlanVersion.version)
    versions = session.scalars(
        select(PlanVersion).join(PlanRow, current).where(PlanRow.id.in_(list(counts)))
    )
    return [(plan_from_row(row), counts[row.plan_id]) for row in versions]


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return due_now(now)


def _count(session: Session, table: type[Base], *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(table).where(*where)
    return int(session.scalar(query) or 0)


def _by_status(session: Session, column: object, known: list[str]) -> dict[str, int]:
    """Counts by status, with every known status present (0 when none)."""
    counts = dict.fromkeys(known, 0)
    rows = session.execute(select(column, func.count()).group_by(column))  # type: ignore[call-overload]
    counts.update({str(status): int(n) for status, n in rows})
    return counts
