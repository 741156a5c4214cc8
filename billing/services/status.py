"""Figures for `billing status`, `billing drain` and the web process's /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from billing.db.tables import Base, Charge, ScheduleTakeover, Subscription
from billing.services.claims import CHARGEABLE, OPEN


@dataclass
class Outstanding:
    due: int
    open_charges: int

    @property
    def total(self) -> int:
        return self.due + self.open_charges


@dataclass
class StatusReport:
    now: datetime
    subscriptions: dict[str, int] = field(default_factory=dict)
    charges: dict[str, int] = field(default_factory=dict)
    due_now: int = 0
    due_next_24h: int = 0
    oldest_due_seconds: int = 0
    failed_last_24h: int = 0
    queue_depth: int | None = None
    set_aside: int = 0  # subscriptions the scheduler set aside (invariant 10): see the reasons
    set_aside_reasons: list[tuple[int, str]] = field(default_factory=list)
    duplicate_payments: int = 0  # second paid charges of one period, for a person to refund
    takeovers_held: int = 0  # customers `import portone-schedules` left held: run it again


SET_ASIDE_SHOWN = 20


def due_now(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Due and chargeable, not set aside: what the scheduler will claim (a row set aside
    waits for a person and is counted as such, not as due)."""
    return (
        Subscription.next_charge_at <= now,
        Subscription.status.in_(CHARGEABLE),
        Subscription.set_aside_at.is_(None),
    )


def set_aside_rows(session: Session, limit: int = SET_ASIDE_SHOWN) -> list[tuple[int, str]]:
    query = select(Subscription.id, Subscription.set_aside_reason).where(
        Subscription.set_aside_at.is_not(None)
    )
    rows = session.execute(query.order_by(Subscription.set_aside_at).limit(limit))
    return [(sid, reason or "") for sid, reason in rows]


def outstanding(session: Session, now: datetime) -> Outstanding:
    """What is left to do at ``now``: due subscriptions and charges not settled.

    One statement, so one snapshot: a subscription has no due time while its charge is open,
    and two separate reads could fall either side of that charge settling and see neither."""
    due = select(func.count()).select_from(Subscription).where(*due_now(now)).scalar_subquery()
    open_charges = (
        select(func.count()).select_from(Charge).where(Charge.status.in_(OPEN)).scalar_subquery()
    )
    counts = session.execute(select(due, open_charges)).one()
    return Outstanding(int(counts[0] or 0), int(counts[1] or 0))


def status_report(session: Session, now: datetime) -> StatusReport:
    report = StatusReport(now)
    report.subscriptions = _counts(session, Subscription.status)
    report.charges = _counts(session, Charge.status)
    chargeable = Subscription.status.in_(CHARGEABLE)
    report.set_aside = _count(session, Subscription, Subscription.set_aside_at.is_not(None))
    report.set_aside_reasons = set_aside_rows(session)
    report.duplicate_payments = _count(session, Charge, Charge.duplicate_of.is_not(None))
    report.takeovers_held = _count(session, ScheduleTakeover, ScheduleTakeover.state == "held")
    report.due_now = outstanding(session, now).due
    report.due_next_24h = int(
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(
                chargeable,
                Subscription.next_charge_at > now,
                Subscription.next_charge_at <= now + timedelta(days=1),
            )
        )
        or 0
    )
    oldest = session.scalar(select(func.min(Subscription.next_charge_at)).where(*due_now(now)))
    report.oldest_due_seconds = int((now - oldest).total_seconds()) if oldest else 0
    report.failed_last_24h = int(
        session.scalar(
            select(func.count())
            .select_from(Charge)
            .where(Charge.status == "failed", Charge.created_at > now - timedelta(days=1))
        )
        or 0
    )
    return report


def _counts(session: Session, column: object) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column))  # type: ignore[call-overload]
    return {str(status): int(count) for status, count in rows}


def _count(session: Session, table: type[Base], *where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)
