"""The work that needs a person, for the operator console: past-due subscriptions, charges
whose outcome is unknown, refunds in progress, notices failing, rows the scheduler set aside
and second payments of one period. Read only; each queue shows its oldest rows first, at
most ``limit`` of them, with its total."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from billing.db.tables import Base, Charge, Customer, Notice, PlanVersion, Refund, Subscription
from billing.domain.charges import ChargeStatus
from billing.domain.statuses import SubscriptionStatus
from billing.services.refunds import OPEN as OPEN_REFUNDS

SHOWN = 100
Row = TypeVar("Row")


@dataclass(frozen=True)
class PastDue:
    subscription_id: int
    customer_uid: str
    plan_id: str
    zone: ZoneInfo
    next_retry: datetime | None  # None: no retry left before the dunning window ends
    awaiting_new_card: bool
    first_failed_at: datetime | None
    decline_class: str | None  # of the latest failed charge
    fail_reason: str | None


@dataclass(frozen=True)
class UnknownCharge:
    charge_id: int
    subscription_id: int
    merchant_uid: str
    amount: int
    sent_at: datetime | None  # system clock
    age_seconds: int
    sends: int
    lookups: int


@dataclass(frozen=True)
class OpenRefund:
    refund_id: int
    charge_id: int
    subscription_id: int
    amount: int
    status: str
    reason: str
    fail_reason: str | None
    sends: int
    created_at: datetime


@dataclass(frozen=True)
class FailingNotice:
    notice_id: int
    subscription_id: int | None
    kind: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime


@dataclass(frozen=True)
class SetAside:
    subscription_id: int
    reason: str
    since: datetime | None


@dataclass(frozen=True)
class Duplicate:
    charge_id: int
    subscription_id: int
    duplicate_of: int
    merchant_uid: str
    amount: int
    refunded_amount: int


@dataclass
class Queue(Generic[Row]):
    total: int = 0
    rows: list[Row] = field(default_factory=list)


@dataclass
class Queues:
    past_due: Queue[PastDue]
    unknown: Queue[UnknownCharge]
    refunds: Queue[OpenRefund]
    notices: Queue[FailingNotice]
    set_aside: Queue[SetAside]
    duplicates: Queue[Duplicate]


def read_queues(session: Session, wall: datetime, limit: int = SHOWN) -> Queues:
    """Every queue at once; ``wall`` (the system clock) measures how long PortOne is silent."""
    return Queues(
        past_due=past_due(session, limit),
        unknown=unknown_charges(session, wall, limit),
        refunds=open_refunds(session, limit),
        notices=failing_notices(session, limit),
        set_aside=set_aside(session, limit),
        duplicates=duplicates(session, limit),
    )


def past_due(session: Session, limit: int) -> Queue[PastDue]:
    where = Subscription.status == SubscriptionStatus.PAST_DUE
    query = (
        select(Subscription, Customer.customer_uid, PlanVersion.timezone)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(
            PlanVersion,
            (PlanVersion.plan_id == Subscription.plan_id)
            & (PlanVersion.version == Subscription.plan_version),
        )
        .where(where)
        .order_by(Subscription.next_charge_at.asc().nulls_last(), Subscription.id)
        .limit(limit)
    )
    found = session.execute(query).all()
    declines = _latest_declines(session, [row.id for row, _uid, _zone in found])
    rows = [
        PastDue(
            row.id,
            uid,
            row.plan_id,
            ZoneInfo(zone),
            row.next_charge_at,
            row.awaiting_new_card,
            row.first_failed_at,
            *declines.get(row.id, (None, None)),
        )
        for row, uid, zone in found
    ]
    return Queue(_count(session, Subscription, where), rows)


def _latest_declines(session: Session, ids: list[int]) -> dict[int, tuple[str | None, str | None]]:
    """Decline class and reason of each subscription's latest failed charge."""
    query = (
        select(Charge.subscription_id, Charge.decline_class, Charge.fail_reason)
        .where(Charge.subscription_id.in_(ids), Charge.status == ChargeStatus.FAILED)
        .order_by(Charge.id)
    )
    return {sid: (klass, reason) for sid, klass, reason in session.execute(query)}


def unknown_charges(session: Session, wall: datetime, limit: int) -> Queue[UnknownCharge]:
    where = Charge.status == ChargeStatus.UNKNOWN
    query = select(Charge).where(where).order_by(Charge.sent_at.asc().nulls_first(), Charge.id)
    rows = [
        UnknownCharge(
            c.id,
            c.subscription_id,
            c.merchant_uid,
            c.amount,
            c.sent_at,
            _age(wall, c.sent_at or c.updated_at),
            c.sends,
            c.lookups,
        )
        for c in session.scalars(query.limit(limit))
    ]
    return Queue(_count(session, Charge, where), rows)


def open_refunds(session: Session, limit: int) -> Queue[OpenRefund]:
    where = Refund.status.in_(OPEN_REFUNDS)
    query = (
        select(Refund, Charge.subscription_id)
        .join(Charge, Charge.id == Refund.charge_id)
        .where(where)
        .order_by(Refund.id)
        .limit(limit)
    )
    rows = [
        OpenRefund(
            r.id,
            r.charge_id,
            sid,
            r.amount,
            r.status,
            r.reason,
            r.fail_reason,
            r.sends,
            r.created_at,
        )
        for r, sid in session.execute(query)
    ]
    return Queue(_count(session, Refund, where), rows)


def failing_notices(session: Session, limit: int) -> Queue[FailingNotice]:
    """Notices whose last delivery failed and that are not delivered yet (they are retried
    with a backoff of up to an hour), and any marked failed."""
    where = (Notice.status == "failed") | (
        Notice.status.in_(["pending", "sending"]) & Notice.last_error.is_not(None)
    )
    query = select(Notice).where(where).order_by(Notice.id).limit(limit)
    rows = [
        FailingNotice(
            n.id,
            n.subscription_id,
            n.kind,
            n.channel,
            n.status,
            n.attempts,
            n.last_error,
            n.next_attempt_at,
        )
        for n in session.scalars(query)
    ]
    return Queue(_count(session, Notice, where), rows)


def set_aside(session: Session, limit: int) -> Queue[SetAside]:
    where = Subscription.set_aside_at.is_not(None)
    query = select(Subscription.id, Subscription.set_aside_reason, Subscription.set_aside_at)
    found = session.execute(query.where(where).order_by(Subscription.set_aside_at).limit(limit))
    rows = [SetAside(sid, reason or "", since) for sid, reason, since in found]
    return Queue(_count(session, Subscription, where), rows)


def duplicates(session: Session, limit: int) -> Queue[Duplicate]:
    """Second paid charges of one period not yet refunded in full."""
    where = Charge.duplicate_of.is_not(None) & (Charge.refunded_amount < Charge.amount)
    query = select(Charge).where(where).order_by(Charge.id).limit(limit)
    rows = [
        Duplicate(
            c.id,
            c.subscription_id,
            c.duplicate_of or 0,
            c.merchant_uid,
            c.amount,
            c.refunded_amount,
        )
        for c in session.scalars(query)
    ]
    return Queue(_count(session, Charge, where), rows)


def _age(wall: datetime, since: datetime) -> int:
    return max(0, int((wall - since).total_seconds()))


def _count(session: Session, table: type[Base], where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(where)) or 0)
