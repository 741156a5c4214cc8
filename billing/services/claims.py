"""Finding due work: claim due subscriptions into charge rows, and sweep open charges.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` so that any number of schedulers can run at
once; each claimed subscription gets its pending charge row (with its deterministic
merchant_uid) in the same transaction. The caller publishes after commit; a publish that is
lost is found again by ``pending_to_republish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from billing.db.bulk import insert_returning_ids
from billing.db.tables import Charge, Customer, Event, Subscription
from billing.domain import subscriptions as lifecycle
from billing.domain.calendar import period_amount
from billing.domain.charges import OPEN_CHARGE_STATUSES, ChargeStatus, merchant_uid
from billing.domain.plans import MAX_ATTEMPTS_PER_30_DAYS, Plan
from billing.domain.subscriptions import CHARGEABLE_STATUSES, BillingState
from billing.services.charging import apply_decline, queue_final_notice
from billing.services.history import record_event
from billing.services.notices import NoticeKind, queue_notice
from billing.services.plan_cache import PlanCache
from billing.services.reconcile import LOOKUP_LEASE
from billing.services.subscriptions import load_state, state_values, store_state

SUBSCRIPTIONS = cast(Table, Subscription.__table__)
CHARGES = cast(Table, Charge.__table__)
EVENTS = cast(Table, Event.__table__)
OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]
ATTEMPT_WINDOW = timedelta(days=30)
CHARGEABLE = [str(status) for status in CHARGEABLE_STATUSES]


@dataclass
class Claimed:
    charge_ids: list[int] = field(default_factory=list)
    examined: int = 0
    canceled: int = 0
    skipped: int = 0


def due_subscriptions(session: Session, now: datetime, limit: int) -> Sequence[Row[Any]]:
    """Due, chargeable, with no open charge; locked, skipping rows another claimer holds.

    Core rows, not ORM objects: a claim batch reads, computes and writes in bulk."""
    has_open_charge = exists().where(
        CHARGES.c.subscription_id == SUBSCRIPTIONS.c.id, CHARGES.c.status.in_(OPEN)
    )
    query = (
        select(SUBSCRIPTIONS)
        .where(
            SUBSCRIPTIONS.c.next_charge_at <= now,
            SUBSCRIPTIONS.c.status.in_(CHARGEABLE),
            ~has_open_charge,
        )
        .order_by(SUBSCRIPTIONS.c.next_charge_at, SUBSCRIPTIONS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=SUBSCRIPTIONS)
    )
    return session.execute(query).all()


@dataclass
class Batch:
    """What one claim batch shares: the clock, plans, customers and recent attempts, and
    the rows it will write in bulk."""

    session: Session
    now: datetime
    wall: datetime
    current: dict[str, Plan]
    cache: PlanCache
    customers: dict[int, str]
    attempts: CardAttempts
    result: Claimed
    charges: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)


def claim_due(
    session: Session,
    now: datetime,
    wall: datetime,
    limit: int,
    cache: PlanCache,
) -> Claimed:
    """Claim up to ``limit`` due subscriptions: one pending charge row each, in bulk.
    The current plans are read only when something is due (an idle pass costs one query)."""
    rows = due_subscriptions(session, now, limit)
    result = Claimed(examined=len(rows))
    if not rows:
        return result
    current = cache.current(session)
    customers = _customer_uids(session, {row.customer_id for row in rows})
    attempts = CardAttempts.load(session, set(customers.values()), now)
    batch = Batch(session, now, wall, current, cache, customers, attempts, result)
    for row in rows:
        _claim_one(batch, row)
    _write(batch)
    return result


def _write(batch: Batch) -> None:
    session = batch.session
    if batch.updates:
        by_id = update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == bindparam("subscription"))
        session.execute(by_id, batch.updates)
    if not batch.charges:
        return
    ids = insert_returning_ids(session, CHARGES, batch.charges, CHARGES.c.merchant_uid)
    recorded = datetime.now(UTC)
    session.execute(insert(EVENTS), [
        {"subscription_id": charge["subscription_id"], "charge_id": charge_id,
         "kind": "charge_created", "occurred_at": batch.now, "recorded_at": recorded,
         "data": {"merchant_uid": charge["merchant_uid"], "amount": charge["amount"],
                  "period_no": charge["period_no"], "attempt": charge["attempt"]}}
        for charge_id, charge in zip(ids, batch.charges, strict=True)
    ])  # fmt: skip
    batch.result.charge_ids = ids


def _claim_one(batch: Batch, row: Row[Any]) -> None:
    state = load_state(row)
    if state.cancel_at_period_end or state.awaiting_new_card:
        _end_at_renewal(batch, row.id, state)  # rare: the ORM path, with notices
        return
    # The first attempt of a period takes the current terms; retries keep the first one's.
    if state.attempt == 1:
        plan = batch.current[row.plan_id]
    else:
        plan = batch.cache.version(batch.session, row.plan_id, row.plan_version)
    customer_uid = batch.customers[row.customer_id]
    later = batch.attempts.postponed_until(customer_uid)
    if later is not None:
        _postpone(batch, row, later)
        return
    amount = period_amount(plan, state.due)
    if amount <= 0:
        _stage(batch, row, lifecycle.skip_period(state, plan), row.plan_version)
        record_event(batch.session, "period_skipped", batch.now, subscription_id=row.id,
                     reason="0 KRW")  # fmt: skip
        batch.result.skipped += 1
        return
    _stage(batch, row, lifecycle.begin_period(state), plan.version)
    batch.attempts.add(customer_uid, batch.now)
    batch.charges.append({
        "subscription_id": row.id, "period_no": state.period_no, "attempt": state.attempt,
        "merchant_uid": merchant_uid(row.key, state.period_no, state.attempt),
        "customer_uid": customer_uid, "plan_id": plan.id, "plan_version": plan.version,
        "name": plan.name, "amount": amount, "card_quota": plan.card_quota,
        "period_start": state.due.start, "period_end": state.due.end,
        "status": ChargeStatus.PENDING, "sends": 0, "refunded_amount": 0,
        "created_at": batch.now, "updated_at": batch.wall,
    })  # fmt: skip


def _end_at_renewal(batch: Batch, subscription_id: int, state: BillingState) -> None:
    """Cancel-at-period-end reached the renewal, or a hard decline's window closed."""
    session, now = batch.session, batch.now
    sub = session.get(Subscription, subscription_id)
    assert sub is not None
    sub.updated_at = now
    if state.cancel_at_period_end:
        store_state(sub, lifecycle.cancel_at_renewal(state))
        sub.canceled_at = now
        record_event(session, "subscription_canceled", now, subscription_id=sub.id,
                     reason="canceled at period end")  # fmt: skip
        queue_notice(session, batch.cache.notice_settings(session),
                     NoticeKind.SUBSCRIPTION_CANCELED, sub, now, batch.wall,
                     reason="canceled at period end")  # fmt: skip
    else:
        plan = batch.cache.version(session, sub.plan_id, sub.plan_version)
        decline = lifecycle.end_dunning(state, plan.dunning)
        apply_decline(session, sub, decline, now)
        queue_final_notice(session, batch.cache, sub, decline, now, batch.wall)
    batch.result.canceled += 1


def _stage(batch: Batch, row: Row[Any], state: BillingState, plan_version: int) -> None:
    """One subscription update of the batch's executemany (every row has the same keys)."""
    batch.updates.append({**state_values(state), "subscription": row.id,
                          "plan_version": plan_version, "updated_at": batch.now})  # fmt: skip


def _postpone(batch: Batch, row: Row[Any], later: datetime) -> None:
    _stage(batch, row, replace(load_state(row), next_charge_at=later), row.plan_version)
    record_event(batch.session, "attempt_postponed", batch.now, subscription_id=row.id,
                 reason=f"{MAX_ATTEMPTS_PER_30_DAYS} attempts on this card in 30 days",
                 until=later.isoformat())  # fmt: skip
    batch.result.skipped += 1


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
