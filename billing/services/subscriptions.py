"""Subscription use cases that need no charging: create, show, list and lifecycle changes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import CatalogLoad, Charge, Customer, ScheduleTakeover, Subscription
from billing.domain import lifecycle
from billing.domain.charges import OPEN_CHARGE_STATUSES, ChargeStatus
from billing.domain.events import (
    ABSENT,
    Absent,
    CancelScheduled,
    CardUpdated,
    PlanChanged,
    SubscriptionCanceled,
    SubscriptionCreated,
    SubscriptionPaused,
    SubscriptionResumed,
)
from billing.domain.notices import NoticeKind
from billing.domain.plans import Plan
from billing.domain.state import BillingState
from billing.domain.statuses import CHARGEABLE_STATUSES, SubscriptionStatus
from billing.errors import Conflict, InvalidInput, NotFound
from billing.services.customers import get_customer
from billing.services.history import record_event
from billing.services.locks import lock_open_charges
from billing.services.notices import queue_notice, settings_from_load
from billing.services.plan_store import current_plan
from billing.services.rows import load_state, store_state
from billing.services.settlement import void_charge

STATUSES = [str(status) for status in SubscriptionStatus]
Transition = type[
    SubscriptionCanceled | CancelScheduled | SubscriptionPaused | SubscriptionResumed | PlanChanged
]  # the events of a lifecycle action


def new_key() -> str:
    """12 random characters of [a-z2-7] (60 bits): the subscription's part of every
    merchant_uid it derives."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:12].lower()


def create_subscription(
    session: Session, customer_uid: str, plan_id: str, start: datetime, now: datetime
) -> Subscription:
    customer = get_customer(session, customer_uid)
    plan = current_plan(session, plan_id, lock=True)
    return insert_subscription(session, customer, plan, start, lifecycle.start(plan, start), now)


def insert_subscription(
    session: Session,
    customer: Customer,
    plan: Plan,
    start: datetime,
    state: BillingState,
    now: datetime,
    *,
    imported: bool | Absent = ABSENT,
) -> Subscription:
    """A new subscription row in ``state``, with its ``subscription_created`` event."""
    row = Subscription(
        key=new_key(),
        customer_id=customer.id,
        plan_id=plan.id,
        plan_version=plan.version,
        started_at=start,
        trial_end=state.current.end if state.current else None,
        reminded_period_no=0,
        created_at=now,
        updated_at=now,
    )
    store_state(row, state)
    session.add(row)
    session.flush()
    record_event(
        session,
        SubscriptionCreated(
            customer_uid=customer.customer_uid,
            plan_id=plan.id,
            plan_version=plan.version,
            status=row.status,
            imported=imported,
            next_charge_at=_iso(row.next_charge_at),
        ),
        now,
        subscription_id=row.id,
    )
    return row


def get_subscription(session: Session, subscription_id: int, *, lock: bool = False) -> Subscription:
    query = select(Subscription).where(Subscription.id == subscription_id)
    if lock:  # the row as it is now, not as this session first read it (a lost cancel)
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return row


def list_subscriptions(
    session: Session, status: str | None = None, limit: int | None = None
) -> Sequence[Subscription]:
    query = select(Subscription).order_by(Subscription.id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
        query = query.where(Subscription.status == status)
    return session.scalars(query.limit(limit)).all()


def customer_uid_of(session: Session, row: Subscription) -> str:
    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    return customer.customer_uid


def cancel(
    session: Session, subscription_id: int, now: datetime, wall: datetime, at_period_end: bool
) -> Subscription:
    """Cancel now, or at the end of the paid period being served. Asked when that period
    has ended (its renewal is claimed, or dunning is running), it is a cancel now (SPEC 5).
    A charge claimed but not sent is voided; one already sent is settled normally."""
    charges = lock_open_charges(session, subscription_id)

    def kind(state: BillingState) -> Transition:
        return SubscriptionCanceled if state.status == "canceled" else CancelScheduled

    row = _change(
        session,
        subscription_id,
        now,
        kind,
        lambda state, _plan: lifecycle.cancel(state, at_period_end),
        reason=lambda state: _cancel_reason(state, at_period_end),
    )
    if row.status == SubscriptionStatus.CANCELED:
        row.canceled_at = now
        _void_unsent(session, row, charges, now, wall)
        _notify(
            session,
            NoticeKind.SUBSCRIPTION_CANCELED,
            row,
            now,
            wall,
            reason="canceled by the merchant",
        )
    return row


def end_unpaid_start(
    session: Session, subscription_id: int, now: datetime, wall: datetime, why: str
) -> Subscription:
    """A subscription whose key-in first payment was declined or never sent ends at once:
    the customer is still at the checkout (the merchant's app shows ``why``), and there is
    no billing key to charge later. No notice is sent for it."""
    charges = lock_open_charges(session, subscription_id)
    row = _change(
        session,
        subscription_id,
        now,
        SubscriptionCanceled,
        lambda state, _plan: lifecycle.cancel(state, at_period_end=False),
        reason=lambda _state: why,
    )
    row.canceled_at = now
    _void_unsent(session, row, charges, now, wall)
    return row


def _cancel_reason(state: BillingState, at_period_end: bool) -> str:
    if state.status != SubscriptionStatus.CANCELED:
        return "cancel at period end"
    if at_period_end:
        return "cancel at period end asked after the period ended"
    return "canceled by the merchant"


def pause(session: Session, subscription_id: int, now: datetime, wall: datetime) -> Subscription:
    """No charges while paused: a charge claimed but not sent is voided. Refused for a
    subscription still held by ``import portone-schedules``: its resume would charge at once
    while PortOne's schedules may still charge too."""
    _refuse_while_held(session, subscription_id)
    charges = lock_open_charges(session, subscription_id)
    row = _change(
        session,
        subscription_id,
        now,
        SubscriptionPaused,
        lambda state, _plan: lifecycle.pause(state),
    )
    row.paused_at = now
    _void_unsent(session, row, charges, now, wall)
    _notify(
        session, NoticeKind.SUBSCRIPTION_PAUSED, row, now, wall, reason="paused by the merchant"
    )
    return row


def _refuse_while_held(session: Session, subscription_id: int) -> None:
    query = select(ScheduleTakeover.customer_uid).where(
        ScheduleTakeover.subscription_id == subscription_id, ScheduleTakeover.state == "held"
    )
    if session.scalar(query) is not None:
        raise Conflict(
            f"subscription {subscription_id} is held while it is taken over from PortOne's "
            "hosted scheduler: run `billing import portone-schedules` again to finish first"
        )


def _void_unsent(
    session: Session, row: Subscription, locked: list[Charge], now: datetime, wall: datetime
) -> None:
    """Void the pending charge of ``row``: the ones locked before the subscription, and
    one a scheduler claimed in between (its claim committed before our subscription lock)."""
    charges = {charge.id: charge for charge in locked}
    charges.update((charge.id, charge) for charge in lock_open_charges(session, row.id))
    for charge in charges.values():
        if charge.status == ChargeStatus.PENDING:
            void_charge(session, charge, row, now, wall)


def card_updated(session: Session, customer_uid: str, now: datetime) -> list[Subscription]:
    """The customer's card changed: retry every past-due subscription of theirs at once.

    A subscription whose charge is in flight is retried at once if that charge fails (its
    dunning schedule would otherwise replace the immediate retry)."""
    customer = get_customer(session, customer_uid)
    ids = session.scalars(
        select(Subscription.id).where(
            Subscription.customer_id == customer.id,
            Subscription.status.in_([str(s) for s in CHARGEABLE_STATUSES]),
        )
    ).all()
    busy = {charge.subscription_id for sid in ids for charge in lock_open_charges(session, sid)}
    query = select(Subscription).where(Subscription.id.in_(ids)).order_by(Subscription.id)
    rows = list(session.scalars(query.with_for_update()))
    retried = []
    for row in rows:
        if row.id in busy:
            row.retry_at_once = True
        elif row.status == SubscriptionStatus.PAST_DUE:
            store_state(row, lifecycle.card_updated(load_state(row), now))
        else:
            continue
        row.updated_at = now
        record_event(
            session,
            CardUpdated(
                next_charge_at=_iso(row.next_charge_at),
                retry_when_in_flight_charge_fails=row.retry_at_once,
            ),
            now,
            subscription_id=row.id,
        )
        retried.append(row)
    return [row for row in retried if row.status == SubscriptionStatus.PAST_DUE]


def _refuse_while_open(session: Session, subscription_id: int, verb: str) -> None:
    """A charge still being settled may yet pay the due period: re-anchoring now could bill
    the same days twice. Wait until PortOne's answer is recorded."""
    open_charge = session.scalar(
        select(Charge.merchant_uid).where(
            Charge.subscription_id == subscription_id,
            Charge.status.in_([str(status) for status in OPEN_CHARGE_STATUSES]),
        )
    )
    if open_charge is not None:
        raise Conflict(
            f"cannot {verb} subscription {subscription_id} while its charge {open_charge} is "
            "being settled; try again once `billing charges list --subscription "
            f"{subscription_id}` shows it paid or failed"
        )


def _notify(
    session: Session,
    kind: NoticeKind,
    row: Subscription,
    now: datetime,
    wall: datetime,
    reason: str,
) -> None:
    latest = select(CatalogLoad).order_by(CatalogLoad.id.desc()).limit(1)
    settings = settings_from_load(session.scalar(latest))
    queue_notice(session, settings, kind, row, now, wall, reason=reason)


def resume(session: Session, subscription_id: int, now: datetime) -> Subscription:
    _refuse_while_open(session, subscription_id, "resume")
    row = _change(
        session,
        subscription_id,
        now,
        SubscriptionResumed,
        lambda state, plan: lifecycle.resume(state, plan, now),
        plan_id_of=lambda row: row.next_plan_id or row.plan_id,
    )
    row.paused_at = None
    return row


def change_plan(
    session: Session, subscription_id: int, plan_id: str, now: datetime
) -> Subscription:
    new = current_plan(session, plan_id, lock=True)
    return _change(
        session,
        subscription_id,
        now,
        PlanChanged,
        lambda state, _plan: lifecycle.change_plan(state, new),
        plan_id_of=lambda _row: new.id,
    )


def _change(
    session: Session,
    subscription_id: int,
    now: datetime,
    kind: Transition | Callable[[BillingState], Transition],
    transition: Callable[[BillingState, Plan], BillingState],
    plan_id_of: Callable[[Subscription], str] = lambda row: row.plan_id,
    reason: Callable[[BillingState], str] | None = None,
) -> Subscription:
    """Lock the row, apply a pure transition, record it in the event log. An operator who
    acts on a row the scheduler set aside gives it another try."""
    row = get_subscription(session, subscription_id, lock=True)
    before = load_state(row)
    plan = current_plan(session, plan_id_of(row), lock=True)
    after = transition(before, plan)
    if after.plan_id != before.plan_id:
        row.plan_version = plan.version
    store_state(row, after)
    row.updated_at = now
    row.set_aside_at = row.set_aside_reason = None
    payload = kind if isinstance(kind, type) else kind(after)
    record_event(
        session,
        payload(
            status_before=str(before.status),
            status=row.status,
            plan_id=row.plan_id,
            next_plan_id=row.next_plan_id,
            cancel_at_period_end=row.cancel_at_period_end,
            next_charge_at=_iso(row.next_charge_at),
            detail=reason(after) if reason is not None else ABSENT,
        ),
        now,
        subscription_id=row.id,
    )
    return row


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
