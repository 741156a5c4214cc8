"""Subscription use cases that need no charging: create, show, list and lifecycle changes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import CatalogLoad, Charge, Customer, Subscription
from billing.domain import subscriptions as lifecycle
from billing.domain.calendar import Period
from billing.domain.charges import OPEN_CHARGE_STATUSES
from billing.domain.plans import Plan
from billing.domain.subscriptions import BillingState, SubscriptionStatus
from billing.errors import Conflict, InvalidInput, NotFound
from billing.services.catalog import current_plan
from billing.services.customers import get_customer
from billing.services.history import record_event
from billing.services.notices import NoticeKind, queue_notice, settings_from_load

STATUSES = [str(status) for status in SubscriptionStatus]


def new_key() -> str:
    """12 random characters of [a-z2-7] (60 bits): the subscription's part of every
    merchant_uid it derives."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:12].lower()


def create_subscription(
    session: Session, customer_uid: str, plan_id: str, start: datetime, now: datetime
) -> Subscription:
    customer = get_customer(session, customer_uid)
    plan = current_plan(session, plan_id)
    state = lifecycle.start(plan, start)
    row = Subscription(
        key=new_key(), customer_id=customer.id, plan_id=plan.id, plan_version=plan.version,
        started_at=start, trial_end=state.current.end if state.current else None,
        reminded_period_no=0, created_at=now, updated_at=now,
    )  # fmt: skip
    store_state(row, state)
    session.add(row)
    session.flush()
    record_event(
        session, "subscription_created", now, subscription_id=row.id,
        customer_uid=customer_uid, plan_id=plan.id, plan_version=plan.version,
        status=row.status, next_charge_at=_iso(row.next_charge_at),
    )  # fmt: skip
    return row


def get_subscription(session: Session, subscription_id: int, *, lock: bool = False) -> Subscription:
    query = select(Subscription).where(Subscription.id == subscription_id)
    row = session.scalar(query.with_for_update() if lock else query)
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
    session: Session, subscription_id: int, now: datetime, at_period_end: bool
) -> Subscription:
    row = _change(
        session, subscription_id, now,
        lambda state: "subscription_canceled" if state.status == "canceled" else "cancel_scheduled",
        lambda state, _plan: lifecycle.cancel(state, at_period_end),
    )  # fmt: skip
    if row.status == SubscriptionStatus.CANCELED:
        row.canceled_at = now
        _notify(
            session, NoticeKind.SUBSCRIPTION_CANCELED, row, now, reason="canceled by the merchant"
        )
    return row


def pause(session: Session, subscription_id: int, now: datetime) -> Subscription:
    row = _change(
        session, subscription_id, now, "subscription_paused",
        lambda state, _plan: lifecycle.pause(state),
    )  # fmt: skip
    row.paused_at = now
    _notify(session, NoticeKind.SUBSCRIPTION_PAUSED, row, now, reason="paused by the merchant")
    return row


def card_updated(session: Session, customer_uid: str, now: datetime) -> list[Subscription]:
    """The customer's card changed: retry every past-due subscription of theirs at once."""
    customer = get_customer(session, customer_uid)
    query = (
        select(Subscription)
        .where(
            Subscription.customer_id == customer.id,
            Subscription.status == SubscriptionStatus.PAST_DUE,
        )
        .order_by(Subscription.id)
        .with_for_update()
    )
    rows = list(session.scalars(query))
    for row in rows:
        store_state(row, lifecycle.card_updated(load_state(row), now))
        row.updated_at = now
        record_event(session, "card_updated", now, subscription_id=row.id,
                     next_charge_at=_iso(row.next_charge_at))  # fmt: skip
    return rows


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
    session: Session, kind: NoticeKind, row: Subscription, now: datetime, reason: str
) -> None:
    latest = select(CatalogLoad).order_by(CatalogLoad.id.desc()).limit(1)
    settings = settings_from_load(session.scalar(latest))
    queue_notice(session, settings, kind, row, now, datetime.now(UTC), reason=reason)


def resume(session: Session, subscription_id: int, now: datetime) -> Subscription:
    _refuse_while_open(session, subscription_id, "resume")
    row = _change(
        session, subscription_id, now, "subscription_resumed",
        lambda state, plan: lifecycle.resume(state, plan, now),
        plan_id_of=lambda row: row.next_plan_id or row.plan_id,
    )  # fmt: skip
    row.paused_at = None
    return row


def change_plan(
    session: Session, subscription_id: int, plan_id: str, now: datetime
) -> Subscription:
    new = current_plan(session, plan_id)
    return _change(
        session, subscription_id, now, "plan_changed",
        lambda state, _plan: lifecycle.change_plan(state, new),
        plan_id_of=lambda _row: new.id,
    )  # fmt: skip


def _change(
    session: Session,
    subscription_id: int,
    now: datetime,
    kind: str | Callable[[BillingState], str],
    transition: Callable[[BillingState, Plan], BillingState],
    plan_id_of: Callable[[Subscription], str] = lambda row: row.plan_id,
) -> Subscription:
    """Lock the row, apply a pure transition, record it in the event log."""
    row = get_subscription(session, subscription_id, lock=True)
    before = load_state(row)
    plan = current_plan(session, plan_id_of(row))
    after = transition(before, plan)
    if after.plan_id != before.plan_id:
        row.plan_version = plan.version
    store_state(row, after)
    row.updated_at = now
    record_event(
        session, kind if isinstance(kind, str) else kind(after), now, subscription_id=row.id,
        status_before=str(before.status), status=row.status, plan_id=row.plan_id,
        next_plan_id=row.next_plan_id, cancel_at_period_end=row.cancel_at_period_end,
        next_charge_at=_iso(row.next_charge_at),
    )  # fmt: skip
    return row


class SubscriptionColumns(Protocol):
    """What the state is read from: an ORM Subscription or a Core row of the table."""

    status: str
    plan_id: str
    anchor_at: datetime
    current_period_start: datetime | None
    current_period_end: datetime | None
    current_cycle: int | None
    due_period_start: datetime
    due_period_end: datetime
    due_cycle: int
    period_no: int
    attempt: int
    next_charge_at: datetime | None
    cancel_at_period_end: bool
    next_plan_id: str | None
    first_failed_at: datetime | None
    awaiting_new_card: bool


def load_state(row: SubscriptionColumns) -> BillingState:
    current = None
    if row.current_period_start is not None and row.current_period_end is not None:
        current = Period(row.current_period_start, row.current_period_end, row.current_cycle or 0)
    return BillingState(
        status=SubscriptionStatus(row.status),
        plan_id=row.plan_id,
        anchor=row.anchor_at,
        current=current,
        due=Period(row.due_period_start, row.due_period_end, row.due_cycle),
        period_no=row.period_no,
        attempt=row.attempt,
        next_charge_at=row.next_charge_at,
        cancel_at_period_end=row.cancel_at_period_end,
        next_plan_id=row.next_plan_id,
        first_failed_at=row.first_failed_at,
        awaiting_new_card=row.awaiting_new_card,
    )


def state_values(state: BillingState) -> dict[str, Any]:
    """The subscription columns that hold ``state``."""
    current = state.current
    return {
        "status": str(state.status),
        "plan_id": state.plan_id,
        "anchor_at": state.anchor,
        "current_period_start": current.start if current else None,
        "current_period_end": current.end if current else None,
        "current_cycle": current.cycle if current else None,
        "due_period_start": state.due.start,
        "due_period_end": state.due.end,
        "due_cycle": state.due.cycle,
        "period_no": state.period_no,
        "attempt": state.attempt,
        "next_charge_at": state.next_charge_at,
        "cancel_at_period_end": state.cancel_at_period_end,
        "next_plan_id": state.next_plan_id,
        "first_failed_at": state.first_failed_at,
        "awaiting_new_card": state.awaiting_new_card,
    }


def store_state(row: Subscription, state: BillingState) -> None:
    for column, value in state_values(state).items():
        setattr(row, column, value)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
