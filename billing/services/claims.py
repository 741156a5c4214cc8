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
from billing.domain.plans import MAX_ATTEMPTS_PER_30_DAYS, Plan
from billing.domain.subscriptions import CHARGEABLE_STATUSES
from billing.services.charging import apply_decline, queue_final_notice
from billing.services.history import record_event
from billing.services.notices import NoticeKind, queue_notice
from billing.services.plan_cache import PlanCache
from billing.services.reconcile import LOOKUP_LEASE
from billing.services.subscriptions import load_state, store_state

OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]
ATTEMPT_WINDOW = timedelta(days=30)
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


@dataclass
class Batch:
    """What one claim batch shares: the clock, plans, customers and recent attempts."""

    session: Session
    now: datetime
    wall: datetime
    current: dict[str, Plan]
    cache: PlanCache
    customers: dict[int, str]
    attempts: CardAttempts
    result: Claimed


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
    attempts = CardAttempts.load(session, set(customers.values()), now)
    batch = Batch(session, now, wall, current, cache, customers, attempts, result)
    charges: list[Charge] = []
    for row in rows:
        charge = _claim_one(batch, row)
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


def _claim_one(batch: Batch, row: Subscription) -> Charge | None:
    session, now = batch.session, batch.now
    state = load_state(row)
    row.updated_at = now
    if state.cancel_at_period_end:
        store_state(row, lifecycle.cancel_at_renewal(state))
        row.canceled_at = now
        record_event(session, "subscription_canceled", now, subscription_id=row.id,
                     reason="canceled at period end")  # fmt: skip
        queue_notice(session, batch.cache.notice_settings(session),
                     NoticeKind.SUBSCRIPTION_CANCELED, row, now, batch.wall,
                     reason="canceled at period end")  # fmt: skip
        batch.result.canceled += 1
        return None
    # The first attempt of a period takes the current terms; retries keep the first one's.
    if state.attempt == 1:
        plan = batch.current[row.plan_id]
    else:
        plan = batch.cache.version(session, row.plan_id, row.plan_version)
    if state.awaiting_new_card:  # a hard decline's window closed without a new card
        decline = lifecycle.end_dunning(state, plan.dunning)
        apply_decline(session, row, decline, now)
        queue_final_notice(session, batch.cache, row, decline, now, batch.wall)
        batch.result.canceled += 1
        return None
    customer_uid = batch.customers[row.customer_id]
    later = batch.attempts.postponed_until(customer_uid)
    if later is not None:
        row.next_charge_at = later
        record_event(session, "attempt_postponed", now, subscription_id=row.id,
                     reason=f"{MAX_ATTEMPTS_PER_30_DAYS} attempts on this card in 30 days",
                     until=later.isoformat())  # fmt: skip
        batch.result.skipped += 1
        return None
    amount = period_amount(plan, state.due)
    if amount <= 0:
        store_state(row, lifecycle.skip_period(state, plan))
        record_event(session, "period_skipped", now, subscription_id=row.id, reason="0 KRW")
        batch.result.skipped += 1
        return None
    store_state(row, lifecycle.begin_period(state))
    row.plan_version = plan.version
    batch.attempts.add(customer_uid, now)
    return Charge(
        subscription_id=row.id, period_no=state.period_no, attempt=state.attempt,
        merchant_uid=merchant_uid(row.key, state.period_no, state.attempt),
        customer_uid=customer_uid, plan_id=plan.id, plan_version=plan.version,
        name=plan.name, amount=amount, card_quota=plan.card_quota,
        period_start=state.due.start, period_end=state.due.end, status=ChargeStatus.PENDING,
        sends=0, refunded_amount=0, created_at=now, updated_at=batch.wall,
    )  # fmt: skip


@dataclass
class CardAttempts:
    """Attempts per card (customer_uid) in the last 30 days: never more than 15."""

    now: datetime
    times: dict[str, list[datetime]]

    @classmethod
    def load(cls, session: Session, customer_uids: set[str], now: datetime) -> CardAttempts:
        since = now - ATTEMPT_WINDOW
        rows = session.execute(
            select(Charge.customer_uid, Charge.created_at).where(
                Charge.customer_uid.in_(customer_uids), Charge.created_at > since
            )
        )
        times: dict[str, list[datetime]] = {}
        for uid, created_at in rows:
            times.setdefault(uid, []).append(created_at)
        return cls(now, times)

    def postponed_until(self, customer_uid: str) -> datetime | None:
        """None when another attempt is allowed now; else when the oldest leaves the window."""
        recent = sorted(self.times.get(customer_uid, []))
        if len(recent) < MAX_ATTEMPTS_PER_30_DAYS:
            return None
        return recent[-MAX_ATTEMPTS_PER_30_DAYS] + ATTEMPT_WINDOW + timedelta(seconds=1)

    def add(self, customer_uid: str, at: datetime) -> None:
        self.times.setdefault(customer_uid, []).append(at)


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
