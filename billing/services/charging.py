"""Charging one charge row, in two short transactions around the PortOne call.

``begin_charge`` moves a pending row to processing and commits before anything is sent;
``finish_charge`` records the classified answer in a new transaction. No database
connection is held while PortOne is working. Both are idempotent by charge id: a duplicate
message finds the row already processing (or settled) and does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.charges import ChargeStatus
from billing.domain.declines import DeclineClass, classify_decline
from billing.domain.subscriptions import (
    Decline,
    DeclineAction,
    SubscriptionStatus,
    record_decline,
    record_payment,
)
from billing.portone.answers import ChargeAnswer, Outcome
from billing.portone.client import ChargeRequest
from billing.services.catalog import current_plan
from billing.services.history import record_event
from billing.services.notices import NoticeKind, queue_notice
from billing.services.plan_cache import PlanCache
from billing.services.subscriptions import load_state, store_state

LOCKED = "billing.locked_subscriptions"  # Session.info key: ids locked FOR UPDATE
TRANSIENT_BASE = 2.0  # seconds; doubled per send, capped, with jitter
TRANSIENT_CAP = 120.0
FIRST_LOOKUP_DELAY = 2.0  # seconds after an unknown outcome before asking PortOne


@dataclass(frozen=True)
class ChargeWork:
    """What the worker sends, read from the row when it became processing."""

    charge_id: int
    subscription_id: int
    request: ChargeRequest
    resend: bool
    sends: int


@dataclass
class FollowUp:
    """Messages to publish after the transaction commits."""

    charge: list[int] = field(default_factory=list)
    reconcile: list[int] = field(default_factory=list)
    countdown: float | None = None

    def add(self, other: FollowUp) -> None:
        """Merge: the later of the countdowns (a retry early by seconds does no harm)."""
        self.charge += other.charge
        self.reconcile += other.reconcile
        if other.countdown is not None:
            self.countdown = max(self.countdown or 0.0, other.countdown)


def backoff(sends: int, jitter: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter between half and all of the step."""
    step = min(TRANSIENT_CAP, TRANSIENT_BASE * 2 ** max(0, sends - 1))
    return float(step * (0.5 + 0.5 * jitter()))


def begin_charges(session: Session, charge_ids: Sequence[int], wall: datetime) -> list[ChargeWork]:
    """Pending -> processing for every charge of ``charge_ids`` that is pending and due
    (committed by the caller before any request is sent). Rows another worker holds are
    skipped, and a duplicate message finds its rows no longer pending: both get nothing."""
    locked = select(Charge.id).where(
        Charge.id.in_(charge_ids),
        Charge.status == ChargeStatus.PENDING,
        or_(Charge.retry_at.is_(None), Charge.retry_at <= wall),
    )
    ids = list(session.scalars(locked.order_by(Charge.id).with_for_update(skip_locked=True)))
    if not ids:
        return []
    statement = (
        update(Charge)
        .where(Charge.id.in_(ids))
        .values(
            status=ChargeStatus.PROCESSING, sends=Charge.sends + 1, sent_at=wall,
            updated_at=wall, retry_at=None,
        )
        .returning(
            Charge.id, Charge.subscription_id, Charge.customer_uid, Charge.merchant_uid,
            Charge.amount, Charge.name, Charge.card_quota, Charge.sends,
        )
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    works = [_work(row) for row in session.execute(statement)]
    return sorted(works, key=lambda work: work.charge_id)


def begin_charge(session: Session, charge_id: int, wall: datetime) -> ChargeWork | None:
    """``begin_charges`` for one charge."""
    works = begin_charges(session, [charge_id], wall)
    return works[0] if works else None


def _work(row: Any) -> ChargeWork:
    request = ChargeRequest(
        customer_uid=row.customer_uid, merchant_uid=row.merchant_uid, amount=row.amount,
        name=row.name, card_quota=row.card_quota,
    )  # fmt: skip
    return ChargeWork(row.id, row.subscription_id, request, row.sends > 1, row.sends)


def finish_charges(
    session: Session,
    answers: Sequence[tuple[ChargeWork, ChargeAnswer]],
    now: datetime,
    wall: datetime,
    plans: PlanCache,
) -> FollowUp:
    """Record PortOne's answers, all in the caller's transaction. A payment is always
    recorded; anything else only while the row is still the processing send this worker
    made. Charges, then their subscriptions, are locked up front in id order (the order every
    writer uses), and every write is flushed at commit: one round trip per table."""
    if not answers:
        return FollowUp()
    charges = _lock_charges(session, [work.charge_id for work, _ in answers])
    lock_subscriptions(session, sorted({charge.subscription_id for charge in charges}))
    follow = FollowUp()
    with session.no_autoflush:
        for work, answer in answers:
            follow.add(_finish(session, work, answer, now, wall, plans))
    return follow


def finish_charge(
    session: Session,
    work: ChargeWork,
    answer: ChargeAnswer,
    now: datetime,
    wall: datetime,
    plans: PlanCache,
) -> FollowUp:
    """``finish_charges`` for one answer."""
    return finish_charges(session, [(work, answer)], now, wall, plans)


def _lock_charges(session: Session, charge_ids: Sequence[int]) -> list[Charge]:
    query = select(Charge).where(Charge.id.in_(charge_ids)).order_by(Charge.id)
    return list(session.scalars(query.with_for_update()))


def lock_subscriptions(session: Session, subscription_ids: Sequence[int]) -> None:
    """Lock these subscriptions for the rest of the transaction (ids ascending)."""
    query = select(Subscription).where(Subscription.id.in_(subscription_ids))
    rows = session.scalars(query.order_by(Subscription.id).with_for_update())
    _locked(session).update(row.id for row in rows)


def _locked(session: Session) -> set[int]:
    """Subscription ids locked in the session's current transaction."""
    transaction = session.get_transaction()
    held = session.info.get(LOCKED)
    if held is None or held[0] is not transaction:
        held = session.info[LOCKED] = (transaction, set())
    ids: set[int] = held[1]
    return ids


def _finish(
    session: Session,
    work: ChargeWork,
    answer: ChargeAnswer,
    now: datetime,
    wall: datetime,
    plans: PlanCache,
) -> FollowUp:
    charge = session.get(Charge, work.charge_id)
    assert charge is not None
    record_event(
        session, "gateway_answer", now, subscription_id=charge.subscription_id,
        charge_id=charge.id, merchant_uid=charge.merchant_uid, amount=charge.amount,
        send=work.sends, outcome=str(answer.outcome), http_status=answer.http_status,
        code=answer.code, reason=answer.reason, imp_uid=answer.imp_uid,
    )  # fmt: skip
    if answer.outcome == Outcome.APPROVED:
        assert answer.imp_uid is not None
        settle_paid(session, charge, answer.imp_uid, now, wall, plans)
        return FollowUp()
    if charge.status != ChargeStatus.PROCESSING or charge.sends != work.sends:
        return FollowUp()  # the sweeper took it over: reconciliation decides
    if answer.outcome in (Outcome.DECLINED, Outcome.REFUSED):
        settle_failed(session, charge, answer.reason, now, wall, plans)
        return FollowUp()
    if answer.outcome == Outcome.TRANSIENT:
        delay = backoff(work.sends)
        _park(charge, ChargeStatus.PENDING, wall, delay)
        return FollowUp(charge=[charge.id], countdown=delay)
    _park(charge, ChargeStatus.UNKNOWN, wall, FIRST_LOOKUP_DELAY)
    return FollowUp(reconcile=[charge.id], countdown=FIRST_LOOKUP_DELAY)


def _park(charge: Charge, status: ChargeStatus, wall: datetime, delay: float) -> None:
    charge.status = status
    charge.retry_at = wall + timedelta(seconds=delay)
    charge.updated_at = wall


def settle_paid(
    session: Session, charge: Charge, imp_uid: str, now: datetime, wall: datetime, plans: PlanCache
) -> None:
    """PortOne holds this charge as paid: record it and advance the subscription."""
    if charge.status == ChargeStatus.PAID:
        return
    was_failed = charge.status == ChargeStatus.FAILED
    charge.status, charge.imp_uid = ChargeStatus.PAID, imp_uid
    charge.paid_at, charge.updated_at, charge.retry_at = now, wall, None
    sub = _lock_subscription(session, charge.subscription_id)
    record_event(
        session, "charge_paid", now, subscription_id=sub.id, charge_id=charge.id,
        merchant_uid=charge.merchant_uid, amount=charge.amount, imp_uid=imp_uid,
        period_no=charge.period_no, attempt=charge.attempt,
    )  # fmt: skip
    if sub.period_no != charge.period_no:
        record_event(session, "payment_for_superseded_period", now, subscription_id=sub.id,
                     charge_id=charge.id, period_no=charge.period_no)  # fmt: skip
        return
    if was_failed:  # an open charge was the only one of the subscription: nothing else to stop
        _supersede_unsent(session, charge, wall)
    before = load_state(sub)
    plan = plans.version(session, charge.plan_id, charge.plan_version)
    next_plan = current_plan(session, sub.next_plan_id) if sub.next_plan_id else None
    after = record_payment(before, plan, next_plan)
    store_state(sub, after)
    if next_plan is not None:
        sub.plan_version = next_plan.version
    sub.updated_at = now
    if before.status == SubscriptionStatus.PAST_DUE:
        record_event(session, "payment_recovered", now, subscription_id=sub.id,
                     charge_id=charge.id, attempt=charge.attempt)  # fmt: skip
        queue_notice(session, plans.notice_settings(session), NoticeKind.PAYMENT_RECOVERED, sub,
                     now, wall, charge=charge, attempts=charge.attempt)  # fmt: skip


def settle_failed(
    session: Session, charge: Charge, reason: str, now: datetime, wall: datetime, plans: PlanCache
) -> None:
    """Declined or refused: no money moved. The decline class and dunning decide what next."""
    decline_class = classify_decline(reason)
    charge.status, charge.fail_reason = ChargeStatus.FAILED, reason
    charge.decline_class = str(decline_class)
    charge.updated_at, charge.retry_at = wall, None
    sub = _lock_subscription(session, charge.subscription_id)
    record_event(
        session, "charge_failed", now, subscription_id=sub.id, charge_id=charge.id,
        merchant_uid=charge.merchant_uid, amount=charge.amount, reason=reason,
        decline_class=str(decline_class), period_no=charge.period_no, attempt=charge.attempt,
    )  # fmt: skip
    if (sub.period_no, sub.attempt) != (charge.period_no, charge.attempt):
        return
    policy = plans.version(session, charge.plan_id, charge.plan_version).dunning
    hard = decline_class == DeclineClass.HARD
    # Dated when the attempt was made, not when its outcome was learned: a decline found by a
    # late reconciliation still gets every retry the policy promises.
    decline = record_decline(load_state(sub), policy, min(now, charge.created_at), hard=hard)
    apply_decline(session, sub, decline, now)
    if decline.action == DeclineAction.NONE:
        return
    settings = plans.notice_settings(session)
    retry = (
        sub.next_charge_at.isoformat()
        if decline.action == DeclineAction.RETRY and sub.next_charge_at
        else None
    )
    queue_notice(session, settings, NoticeKind.PAYMENT_FAILED, sub, now, wall, charge=charge,
                 needs_new_card=hard, next_retry_at=retry)  # fmt: skip
    queue_final_notice(session, plans, sub, decline, now, wall)


def apply_decline(session: Session, sub: Subscription, decline: Decline, now: datetime) -> None:
    store_state(sub, decline.state)
    sub.updated_at = now
    if decline.action == DeclineAction.CANCEL:
        sub.canceled_at = now
    elif decline.action == DeclineAction.PAUSE:
        sub.paused_at = now
    retry_at = sub.next_charge_at.isoformat() if sub.next_charge_at else None
    record_event(session, f"dunning_{decline.action}", now, subscription_id=sub.id,
                 status=sub.status, next_charge_at=retry_at)  # fmt: skip


def queue_final_notice(
    session: Session,
    plans: PlanCache,
    sub: Subscription,
    decline: Decline,
    now: datetime,
    wall: datetime,
) -> None:
    """Dunning ended: tell that the subscription was canceled or paused."""
    kinds = {DeclineAction.CANCEL: NoticeKind.SUBSCRIPTION_CANCELED,
             DeclineAction.PAUSE: NoticeKind.SUBSCRIPTION_PAUSED}  # fmt: skip
    kind = kinds.get(decline.action)
    if kind is not None:
        queue_notice(session, plans.notice_settings(session), kind, sub, now, wall,
                     reason="dunning exhausted")  # fmt: skip


def _supersede_unsent(session: Session, paid: Charge, wall: datetime) -> None:
    """Another attempt of a now-paid period that was never sent must not be sent."""
    others = session.scalars(
        select(Charge)
        .where(
            Charge.subscription_id == paid.subscription_id,
            Charge.period_no == paid.period_no,
            Charge.id != paid.id,
            Charge.status == ChargeStatus.PENDING,
            Charge.sends == 0,
        )
        .with_for_update()
    )
    for other in others:
        other.status, other.fail_reason, other.updated_at = ChargeStatus.FAILED, "superseded", wall


def _lock_subscription(session: Session, subscription_id: int) -> Subscription:
    """The subscription, locked: already, by ``lock_subscriptions``, or now."""
    if subscription_id not in _locked(session):
        lock_subscriptions(session, [subscription_id])
    sub = session.get(Subscription, subscription_id)
    assert sub is not None
    return sub
