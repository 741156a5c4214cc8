"""Finding due work: claim due subscriptions into charge rows, and sweep open charges.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` so that any number of schedulers can run at
once; each claimed subscription gets its pending charge row (with its deterministic
merchant_uid) in the same transaction. The caller publishes after commit; a publish that is
lost is found again by ``pending_to_republish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Customer, Subscription
from billing.domain import subscriptions as lifecycle
from billing.domain.calendar import period_amount
from billing.domain.charges import OPEN_CHARGE_STATUSES, ChargeStatus, merchant_uid
from billing.domain.plans import Plan
from billing.domain.subscriptions import CHARGEABLE_STATUSES
from billing.services.history import record_event
from billing.services.plan_cache import PlanCache
from billing.services.reconcile import LOOKUP_LEASE
from billing.services.subscriptions import load_state, store_state

OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]
CHARGEABLE = [str(status) for status in CHARGEABLE_STATUSES]


@dataclass
class Claimed:
    charge_ids: list[int] = field(default_factory=list)
    examined: int = 0
    canceled: int = 0
    skipped: int = 0


def due_subscriptions(session: Session, now: datetime, limit: int) -> Sequence[Subscription]:
    """Due, chargeable, with no open charge; locked, skipping rows another claimer holds."""
    has_open_charge = exists().where(
        Charge.subscription_id == Subscription.id, Charge.status.in_(OPEN)
    )
    query = (
        select(Subscription)
        .where(
            Subscription.next_charge_at <= now,
            Subscription.status.in_(CHARGEABLE),
            ~has_open_charge,
        )
        .order_by(Subscription.next_charge_at, Subscription.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Subscription)
    )
    return session.scalars(query).all()


def claim_due(
    session: Session,
    now: datetime,
    wall: datetime,
    limit: int,
    current: dict[str, Plan],
    cache: PlanCache,
) -> Claimed:
    rows = due_subscriptions(session, now, limit)
    result = Claimed(examined=len(rows))
    if not rows:
        return result
    customers = _customer_uids(session, {row.customer_id for row in rows})
    charges: list[Charge] = []
    for row in rows:
        charge = _claim_one(session, row, now, wall, current, cache, customers, result)
        if charge is not None:
            charges.append(charge)
    session.add_all(charges)
    session.flush()
    for charge in charges:
        record_event(session, "charge_created", now, subscription_id=charge.subscription_id,
                     charge_id=charge.id, merchant_uid=charge.merchant_uid, amount=charge.amount,
                     period_no=charge.period_no, attempt=charge.attempt)  # fmt: skip
    result.charge_ids = [charge.id for charge in charges]
    return result


def _claim_one(
    session: Session,
    row: Subscription,
    now: datetime,
    wall: datetime,
    current: dict[str, Plan],
    cache: PlanCache,
    customers: dict[int, str],
    result: Claimed,
) -> Charge | None:
    state = load_state(row)
    row.updated_at = now
    if state.cancel_at_period_end:
        store_state(row, lifecycle.cancel_at_renewal(state))
        row.canceled_at = now
        record_event(session, "subscription_canceled", now, subscription_id=row.id,
                     reason="canceled at period end")  # fmt: skip
        result.canceled += 1
        return None
    # The first attempt of a period takes the current terms; retries keep the first one's.
    plan = (
        current[row.plan_id]
        if state.attempt == 1
        else cache.version(session, row.plan_id, row.plan_version)
    )
    amount = period_amount(plan, state.due)
    if amount <= 0:
        store_state(row, lifecycle.skip_period(state, plan))
        record_event(session, "period_skipped", now, subscription_id=row.id, reason="0 KRW")
        result.skipped += 1
        return None
    store_state(row, lifecycle.begin_period(state))
    row.plan_version = plan.version
    return Charge(
        subscription_id=row.id, period_no=state.period_no, attempt=state.attempt,
        merchant_uid=merchant_uid(row.key, state.period_no, state.attempt),
        customer_uid=customers[row.customer_id], plan_id=plan.id, plan_version=plan.version,
        name=plan.name, amount=amount, card_quota=plan.card_quota,
        period_start=state.due.start, period_end=state.due.end, status=ChargeStatus.PENDING,
        sends=0, refunded_amount=0, created_at=now, updated_at=wall,
    )  # fmt: skip


def _customer_uids(session: Session, ids: set[int]) -> dict[int, str]:
    rows = session.execute(select(Customer.id, Customer.customer_uid).where(Customer.id.in_(ids)))
    return {customer_id: uid for customer_id, uid in rows}


def pending_to_republish(
    session: Session, wall: datetime, window: timedelta, limit: int
) -> list[int]:
    """Pending charges whose retry time has come, or whose message seems lost."""
    due = or_(
        and_(Charge.retry_at.is_not(None), Charge.retry_at <= wall),
        and_(Charge.retry_at.is_(None), Charge.updated_at <= wall - window),
    )
    query = (
        select(Charge)
        .where(Charge.status == ChargeStatus.PENDING, due)
        .order_by(Charge.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    charges = session.scalars(query).all()
    for charge in charges:
        charge.retry_at, charge.updated_at = None, wall
    return [charge.id for charge in charges]


def unknown_to_reconcile(
    session: Session, now: datetime, wall: datetime, window: timedelta, limit: int
) -> list[int]:
    """Unknown charges whose next lookup is due, and processing ones silent past the window
    (their worker died, or the commit of their outcome was lost): both are reconciled."""
    stuck = and_(Charge.status == ChargeStatus.PROCESSING, Charge.updated_at <= wall - window)
    due_unknown = and_(
        Charge.status == ChargeStatus.UNKNOWN,
        or_(Charge.retry_at.is_(None), Charge.retry_at <= wall),
    )
    query = (
        select(Charge)
        .where(or_(stuck, due_unknown))
        .order_by(Charge.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    charges = session.scalars(query).all()
    for charge in charges:
        if charge.status == ChargeStatus.PROCESSING:
            record_event(session, "charge_stuck", now, subscription_id=charge.subscription_id,
                         charge_id=charge.id, merchant_uid=charge.merchant_uid)  # fmt: skip
        charge.status, charge.updated_at = ChargeStatus.UNKNOWN, wall
        charge.retry_at = wall + timedelta(seconds=LOOKUP_LEASE)  # not published again meanwhile
    return [charge.id for charge in charges]
