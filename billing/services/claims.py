"""Finding due work: claim due subscriptions into charge rows, and sweep open charges.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` so that any number of schedulers can run at
once; each claimed subscription gets its pending charge row (with its deterministic
merchant_uid) in the same transaction. The caller publishes after commit; a publish that is
lost is found again by ``pending_to_republish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from billing.clock import system_now
from billing.db.bulk import insert_returning_ids
from billing.db.tables import Charge, Customer, Event, Subscription
from billing.domain import lifecycle
from billing.domain.calendar import period_amount
from billing.domain.charges import (
    OPEN_CHARGE_STATUSES,
    ChargeStatus,
    Timing,
    looked_up_lately,
    merchant_uid,
)
from billing.domain.dunning import (
    CARD_WINDOW,
    MAX_DECLINES_PER_CARD,
    card_busy,
    card_postponed_until,
    end_dunning,
    needs_lookup,
)
from billing.domain.events import (
    ABSENT,
    AttemptPostponed,
    ChargeCreated,
    ChargeStuck,
    LookupBeforeSend,
    PeriodSkipped,
    SubscriptionCanceled,
)
from billing.domain.notices import NoticeKind
from billing.domain.plans import Plan
from billing.domain.retry import lookup_lease
from billing.domain.state import BillingState
from billing.domain.statuses import CHARGEABLE_STATUSES
from billing.errors import BillingError
from billing.services.aside import SET_ASIDE_RETRY, describe, set_aside
from billing.services.catalog_cache import CatalogCache
from billing.services.history import event_row, record_event
from billing.services.notices import queue_notice
from billing.services.rows import load_state, state_values, store_state
from billing.services.settlement import apply_decline, queue_final_notice

SUBSCRIPTIONS = cast(Table, Subscription.__table__)
CHARGES = cast(Table, Charge.__table__)
EVENTS = cast(Table, Event.__table__)
OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]
CHARGEABLE = [str(status) for status in CHARGEABLE_STATUSES]


@dataclass
class Claimed:
    charge_ids: list[int] = field(default_factory=list)  # to send
    lookup_ids: list[int] = field(default_factory=list)  # to look up before anything is sent
    examined: int = 0
    canceled: int = 0
    skipped: int = 0
    set_aside: int = 0


def due_subscriptions(
    session: Session, now: datetime, wall: datetime, limit: int, only: Sequence[int] = ()
) -> Sequence[Row[Any]]:
    """Due, chargeable, with no open charge, not set aside (or set aside long enough ago to
    be tried again); locked, skipping rows another claimer holds. ``only``: these ids.

    Core rows, not ORM objects: a claim batch reads, computes and writes in bulk."""
    has_open_charge = exists().where(
        CHARGES.c.subscription_id == SUBSCRIPTIONS.c.id, CHARGES.c.status.in_(OPEN)
    )
    aside = SUBSCRIPTIONS.c.set_aside_at
    query = (
        select(SUBSCRIPTIONS)
        .where(
            SUBSCRIPTIONS.c.next_charge_at <= now,
            SUBSCRIPTIONS.c.status.in_(CHARGEABLE),
            ~has_open_charge,
            or_(aside.is_(None), aside <= wall - SET_ASIDE_RETRY),
        )
        .order_by(SUBSCRIPTIONS.c.next_charge_at, SUBSCRIPTIONS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=SUBSCRIPTIONS)
    )
    if only:
        query = query.where(SUBSCRIPTIONS.c.id.in_(only))
    return session.execute(query).all()


@dataclass
class Batch:
    """What one claim batch shares: the clock, plans, customers and recent attempts, and
    the rows it will write in bulk."""

    session: Session
    now: datetime
    wall: datetime
    current: dict[str, Plan]
    cache: CatalogCache
    customers: dict[int, str]
    attempts: CardAttempts
    result: Claimed
    lease: timedelta  # a charge to look up first is not handed out again before this
    charges: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    lookups: dict[str, str] = field(default_factory=dict)  # merchant_uid -> why


def claim_due(
    session: Session,
    now: datetime,
    wall: datetime,
    limit: int,
    cache: CatalogCache,
    window: timedelta,
    only: Sequence[int] = (),
) -> Claimed:
    """Claim up to ``limit`` due subscriptions: one pending charge row each, in bulk.
    The current plans are read only when something is due (an idle pass costs one query).
    A row that cannot be claimed (a plan that vanished, data no code expected) is set aside
    with its reason and the others go on (invariant 10)."""
    rows = due_subscriptions(session, now, wall, limit, only)
    result = Claimed(examined=len(rows))
    if not rows:
        return result
    current = cache.current(session)
    customers = _customer_uids(session, {row.customer_id for row in rows})
    attempts = CardAttempts.load(session, set(customers.values()), now)
    batch = Batch(
        session, now, wall, current, cache, customers, attempts, result, lookup_lease(window)
    )
    for row in rows:
        try:
            _claim_one(batch, row)
        except (LookupError, ValueError, ArithmeticError, TypeError, BillingError) as exc:
            set_aside(session, row.id, describe(exc), now, wall)
            result.set_aside += 1
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
    recorded = system_now()
    session.execute(
        insert(EVENTS),
        [
            event_row(
                _charge_created(batch, charge),
                batch.now,
                recorded,
                subscription_id=charge["subscription_id"],
                charge_id=charge_id,
            )
            for charge_id, charge in zip(ids, batch.charges, strict=True)
        ],
    )
    for charge_id, charge in zip(ids, batch.charges, strict=True):
        looked = charge["merchant_uid"] in batch.lookups
        (batch.result.lookup_ids if looked else batch.result.charge_ids).append(charge_id)


def _charge_created(batch: Batch, charge: dict[str, Any]) -> ChargeCreated:
    uid = charge["merchant_uid"]
    return ChargeCreated(
        merchant_uid=uid,
        amount=charge["amount"],
        period_no=charge["period_no"],
        attempt=charge["attempt"],
        lookup_before_send=batch.lookups.get(uid, ABSENT),
    )


def _claim_one(batch: Batch, row: Row[Any]) -> None:
    state = load_state(row)
    if state.cancel_at_period_end or state.awaiting_new_card:
        with batch.session.begin_nested():  # rare: the ORM path, with notices; all or nothing
            _end_at_renewal(batch, row.id, state)
        return
    # The first attempt of a period takes the current terms; retries keep the first one's.
    if state.attempt == 1:
        plan = batch.current[row.plan_id]
    else:
        plan = batch.cache.version(batch.session, row.plan_id, row.plan_version)
    customer_uid = batch.customers[row.customer_id]
    if batch.attempts.in_flight_limit(customer_uid):
        batch.result.skipped += 1  # the card's attempts in flight are answered first
        return
    later = batch.attempts.postponed_until(customer_uid)
    if later is not None:
        _postpone(batch, row, later)
        return
    amount = period_amount(plan, state.due)
    if amount <= 0:
        _stage(batch, row, lifecycle.skip_period(state, plan), row.plan_version)
        record_event(
            batch.session, PeriodSkipped(reason="0 KRW"), batch.now, subscription_id=row.id
        )
        batch.result.skipped += 1
        return
    uid = merchant_uid(row.key, state.period_no, state.attempt)
    why = needs_lookup(plan.dunning, row.look_before_send, state.next_charge_at, batch.now)
    _stage(batch, row, lifecycle.begin_period(state), plan.version)
    batch.attempts.add(customer_uid)
    if why is not None:
        batch.lookups[uid] = why
    batch.charges.append(
        {
            "subscription_id": row.id,
            "period_no": state.period_no,
            "attempt": state.attempt,
            "merchant_uid": uid,
            "customer_uid": customer_uid,
            "plan_id": plan.id,
            "plan_version": plan.version,
            "name": plan.name,
            "amount": amount,
            "card_quota": plan.card_quota,
            "period_start": state.due.start,
            "period_end": state.due.end,
            "status": ChargeStatus.UNKNOWN if why else ChargeStatus.PENDING,
            "resend_at": None,
            "next_lookup_at": batch.wall + batch.lease if why else None,
            "sends": 0,
            "lookups": 0,
            "refunded_amount": 0,
            "created_at": batch.now,
            "updated_at": batch.wall,
        }
    )


def _end_at_renewal(batch: Batch, subscription_id: int, state: BillingState) -> None:
    """Cancel-at-period-end reached the renewal, or a hard decline's window closed."""
    session, now = batch.session, batch.now
    sub = session.get(Subscription, subscription_id)
    assert sub is not None
    sub.updated_at = now
    if state.cancel_at_period_end:
        store_state(sub, lifecycle.cancel_at_renewal(state))
        sub.canceled_at = now
        record_event(
            session,
            SubscriptionCanceled(reason="canceled at period end"),
            now,
            subscription_id=sub.id,
        )
        queue_notice(
            session,
            batch.cache.notice_settings(session),
            NoticeKind.SUBSCRIPTION_CANCELED,
            sub,
            now,
            batch.wall,
            reason="canceled at period end",
        )
    else:
        plan = batch.cache.version(session, sub.plan_id, sub.plan_version)
        decline = end_dunning(state, plan.dunning)
        apply_decline(session, sub, decline, now)
        queue_final_notice(session, batch.cache, sub, decline, now, batch.wall)
    batch.result.canceled += 1


def _stage(batch: Batch, row: Row[Any], state: BillingState, plan_version: int) -> None:
    """One subscription update of the batch's executemany (every row has the same keys)."""
    batch.updates.append(
        {
            **state_values(state),
            "subscription": row.id,
            "plan_version": plan_version,
            "updated_at": batch.now,
        }
    )


def _postpone(batch: Batch, row: Row[Any], later: datetime) -> None:
    _stage(batch, row, replace(load_state(row), next_charge_at=later), row.plan_version)
    record_event(
        batch.session,
        AttemptPostponed(
            reason=f"{MAX_DECLINES_PER_CARD} declined attempts on this card in 30 days",
            until=later.isoformat(),
        ),
        batch.now,
        subscription_id=row.id,
    )
    batch.result.skipped += 1


@dataclass
class CardAttempts:
    """The card-network cap: at most 15 attempts on one card (customer_uid) that may be
    declined in 30 days. Counted: declines in the window, and attempts still in flight
    (they may become declines). Payments are not counted: a daily plan is charged every
    day, and a customer may hold many subscriptions on one card."""

    declines: dict[str, list[datetime]]
    in_flight: dict[str, int]

    @classmethod
    def load(cls, session: Session, customer_uids: set[str], now: datetime) -> CardAttempts:
        declined = and_(
            Charge.status == ChargeStatus.FAILED,
            Charge.decline_class.is_not(None),
            Charge.created_at > now - CARD_WINDOW,
        )
        rows = session.execute(
            select(Charge.customer_uid, Charge.status, Charge.created_at).where(
                Charge.customer_uid.in_(customer_uids), or_(declined, Charge.status.in_(OPEN))
            )
        )
        declines: dict[str, list[datetime]] = {}
        in_flight: dict[str, int] = {}
        for uid, status, created_at in rows:
            if status == ChargeStatus.FAILED:
                declines.setdefault(uid, []).append(created_at)
            else:
                in_flight[uid] = in_flight.get(uid, 0) + 1
        return cls(declines, in_flight)

    def postponed_until(self, customer_uid: str) -> datetime | None:
        """None when another attempt is allowed now (``dunning.card_postponed_until``)."""
        return card_postponed_until(self.declines.get(customer_uid, []))

    def in_flight_limit(self, customer_uid: str) -> bool:
        """At the cap with attempts in flight: the next pass tries again (``card_busy``)."""
        declines = len(self.declines.get(customer_uid, []))
        return card_busy(declines, self.in_flight.get(customer_uid, 0))

    def add(self, customer_uid: str) -> None:
        self.in_flight[customer_uid] = self.in_flight.get(customer_uid, 0) + 1


def _customer_uids(session: Session, ids: set[int]) -> dict[int, str]:
    rows = session.execute(select(Customer.id, Customer.customer_uid).where(Customer.id.in_(ids)))
    return {customer_id: uid for customer_id, uid in rows}


@dataclass
class Republished:
    charge_ids: list[int] = field(default_factory=list)  # publish to be sent
    lookup_ids: list[int] = field(default_factory=list)  # look up first (now unknown)


def pending_to_republish(
    session: Session,
    now: datetime,
    wall: datetime,
    window: timedelta,
    limit: int,
    cache: CatalogCache,
) -> Republished:
    """Pending charges whose retry time has come, or whose message seems lost. One old
    enough for a later attempt of its period to exist (a row restored from a backup) is
    looked up before it is sent (``domain.dunning.needs_lookup``)."""
    due = or_(
        and_(Charge.resend_at.is_not(None), Charge.resend_at <= wall),
        and_(Charge.resend_at.is_(None), Charge.updated_at <= wall - window),
    )
    query = (
        select(Charge)
        .where(Charge.status == ChargeStatus.PENDING, due)
        .order_by(Charge.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    found = Republished()
    for charge in session.scalars(query):
        plan = cache.version(session, charge.plan_id, charge.plan_version)
        lately = looked_up_lately(charge.looked_up_at, Timing(wall, window))
        why = needs_lookup(plan.dunning, False, charge.created_at, now, looked_up_lately=lately)
        charge.resend_at, charge.next_lookup_at, charge.updated_at = None, None, wall
        if why is None:
            found.charge_ids.append(charge.id)
            continue
        charge.status = ChargeStatus.UNKNOWN
        charge.next_lookup_at = wall + lookup_lease(window)
        record_event(
            session,
            LookupBeforeSend(merchant_uid=charge.merchant_uid, reason=why),
            now,
            subscription_id=charge.subscription_id,
            charge_id=charge.id,
        )
        found.lookup_ids.append(charge.id)
    return found


def unknown_to_reconcile(
    session: Session, now: datetime, wall: datetime, window: timedelta, limit: int
) -> list[int]:
    """Unknown charges whose next lookup is due, and processing ones silent past the window
    (their worker died, or the commit of their outcome was lost): both are reconciled."""
    stuck = and_(Charge.status == ChargeStatus.PROCESSING, Charge.updated_at <= wall - window)
    due_unknown = and_(
        Charge.status == ChargeStatus.UNKNOWN,
        or_(Charge.next_lookup_at.is_(None), Charge.next_lookup_at <= wall),
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
            record_event(
                session,
                ChargeStuck(merchant_uid=charge.merchant_uid),
                now,
                subscription_id=charge.subscription_id,
                charge_id=charge.id,
            )
        charge.status, charge.updated_at = ChargeStatus.UNKNOWN, wall
        charge.resend_at = None
        charge.next_lookup_at = wall + lookup_lease(window)  # not published again meanwhile
    return [charge.id for charge in charges]
