"""Recording what happened to a charge: paid, refunded at PortOne, failed, or voided.

Shared by the worker (PortOne's answer), the reconciler (a lookup), PortOne's notices and
the operator actions. Recording a payment PortOne holds as paid depends on nothing that can
disappear: plan versions are never deleted, and a second paid attempt of one period is
recorded (as a duplicate for an operator to refund), never refused by the paid-per-period
index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain import retry
from billing.domain.charges import (
    ChargeState,
    ChargeStatus,
    Fail,
    LookUp,
    Resend,
    Settle,
    Step,
    Void,
)
from billing.domain.dunning import (
    Decline,
    DeclineAction,
    DeclineClass,
    classify_decline,
    final_notice,
    record_decline,
)
from billing.domain.events import (
    ChargeFailed,
    ChargePaid,
    ChargeRefunded,
    ChargeVoided,
    DuplicatePayment,
    PaidAfterCancel,
    PaidAfterPause,
    PaymentForSupersededPeriod,
    PaymentRecovered,
    dunning_event,
)
from billing.domain.lifecycle import record_payment
from billing.domain.notices import NoticeKind
from billing.domain.statuses import CHARGEABLE_STATUSES, SubscriptionStatus
from billing.logs import log
from billing.services.catalog_cache import CatalogCache
from billing.services.history import record_event
from billing.services.locks import lock_subscription
from billing.services.notices import queue_notice
from billing.services.plan_store import latest_plan
from billing.services.rows import load_state, store_state

logger = logging.getLogger("billing.settlement")
SIBLINGS = "billing.period_siblings"  # Session.info key: see note_siblings


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


def charge_state(charge: Charge, sub: Subscription | None = None) -> ChargeState:
    """The state machine's view of a charge row (and of its subscription, when loaded)."""
    stopped = sub.status if sub is not None and not chargeable(sub) else None
    return ChargeState(
        status=ChargeStatus(charge.status),
        sends=charge.sends,
        sent_at=charge.sent_at,
        updated_at=charge.updated_at,
        lookups=charge.lookups,
        refusal=charge.refusal,
        stopped=stopped,
    )


def store_step(
    session: Session,
    charge: Charge,
    step: Step,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> FollowUp:
    """Carry out what the charge state machine decided, in the caller's transaction."""
    match step:
        case Settle(imp_uid, refunded, reason, receipt_url) if refunded:
            keep_receipt(charge, receipt_url)
            settle_refunded(session, charge, imp_uid, refunded, reason, now, wall, plans)
        case Settle(imp_uid, _, _, receipt_url):
            keep_receipt(charge, receipt_url)
            settle_paid(session, charge, imp_uid, now, wall, plans)
        case Fail(reason):
            settle_failed(session, charge, reason, now, wall, plans)
        case Void():
            void_charge(
                session, charge, lock_subscription(session, charge.subscription_id), now, wall
            )
        case Resend(after):
            charge.status, charge.updated_at = ChargeStatus.PENDING, wall
            charge.resend_at = wall + timedelta(seconds=after) if after else None
            charge.next_lookup_at = None
            return FollowUp(charge=[charge.id], countdown=after or None)
        case LookUp(after, refusal):
            charge.status, charge.updated_at = ChargeStatus.UNKNOWN, wall
            charge.refusal = refusal if refusal is not None else charge.refusal
            charge.resend_at = None
            charge.next_lookup_at = wall + timedelta(seconds=after or retry.REFUSAL_LEASE)
            return FollowUp(reconcile=[charge.id], countdown=after or None)
    return FollowUp()


LATE_PAYMENT_EVENTS: dict[SubscriptionStatus, type[PaidAfterCancel | PaidAfterPause]] = {
    SubscriptionStatus.CANCELED: PaidAfterCancel,
    SubscriptionStatus.PAUSED: PaidAfterPause,
}


def keep_receipt(charge: Charge, receipt_url: str | None) -> None:
    """The card sales slip (매출전표) PortOne named for this payment, once known."""
    if receipt_url:
        charge.receipt_url = receipt_url


def settle_paid(
    session: Session,
    charge: Charge,
    imp_uid: str,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> None:
    """PortOne holds this charge as paid: record it and advance the subscription."""
    if charge.status == ChargeStatus.PAID:
        return
    quiet = _no_siblings(session, charge)
    first = None if quiet else _paid_sibling(session, charge)
    charge.status, charge.imp_uid, charge.duplicate_of = ChargeStatus.PAID, imp_uid, first
    charge.paid_at, charge.updated_at = now, wall
    charge.resend_at, charge.next_lookup_at = None, None
    charge.refusal = None
    sub = lock_subscription(session, charge.subscription_id)
    record_event(
        session,
        ChargePaid(
            merchant_uid=charge.merchant_uid,
            amount=charge.amount,
            imp_uid=imp_uid,
            period_no=charge.period_no,
            attempt=charge.attempt,
        ),
        now,
        subscription_id=sub.id,
        charge_id=charge.id,
    )
    if first is not None:
        _raise_duplicate(session, charge, first, now)
        return
    _show_late_payment(session, sub, charge, now)
    if sub.period_no != charge.period_no:
        record_event(
            session,
            PaymentForSupersededPeriod(period_no=charge.period_no),
            now,
            subscription_id=sub.id,
            charge_id=charge.id,
        )
        return
    if not quiet:
        _supersede_unsent(session, charge, wall)
    _advance(session, sub, charge, now, wall, plans)


def note_siblings(session: Session, charges: Sequence[Charge]) -> None:
    """One query for a batch of answers instead of two per payment: which charges of the
    periods of ``charges`` are paid (first of their period) or pending, read after the
    charges and their subscriptions were locked (so no claim or recording of that period
    can commit meanwhile). ``settle_paid`` skips its sibling queries for a period where
    none is found; any other period is queried as before."""
    # One open (pending, processing, unknown) charge per subscription is guaranteed by the
    # database: the partial unique index uq_charges_open_per_subscription (billing/db/tables.py,
    # migration 0001_initial) refuses a second one, inserted or updated back to open
    # (tests/integration/test_one_open_charge.py). A batch was made processing by one UPDATE
    # (``begin_charges``), so it holds at most one charge per subscription: no charge settled
    # earlier in this batch can be a sibling this query missed.
    if not charges:
        return
    found: dict[tuple[int, int], set[int]] = {
        (charge.subscription_id, charge.period_no): set() for charge in charges
    }
    busy = or_(
        and_(Charge.status == ChargeStatus.PAID, Charge.duplicate_of.is_(None)),
        Charge.status == ChargeStatus.PENDING,
    )
    query = select(Charge.subscription_id, Charge.period_no, Charge.id).where(
        Charge.subscription_id.in_({sub for sub, _ in found}), busy
    )
    for subscription_id, period_no, charge_id in session.execute(query):
        if (subscription_id, period_no) in found:
            found[subscription_id, period_no].add(charge_id)
    session.info[SIBLINGS] = (session.get_transaction(), found)


def _no_siblings(session: Session, charge: Charge) -> bool:
    """True when ``note_siblings`` found no other charge of this period paid or pending."""
    held = session.info.get(SIBLINGS)
    if held is None or held[0] is not session.get_transaction():
        return False
    others = held[1].get((charge.subscription_id, charge.period_no))
    return others is not None and not others - {charge.id}


def _paid_sibling(session: Session, charge: Charge) -> int | None:
    """Another charge of the same period already recorded paid (PortOne paid two attempts)."""
    query = select(Charge.id).where(
        Charge.subscription_id == charge.subscription_id,
        Charge.period_no == charge.period_no,
        Charge.status == ChargeStatus.PAID,
        Charge.duplicate_of.is_(None),
        Charge.id != charge.id,
    )
    return session.scalar(query.limit(1))


def _raise_duplicate(session: Session, charge: Charge, first: int, now: datetime) -> None:
    """Invariant 1 was broken at PortOne: keep the truth, and put it in front of a person."""
    record_event(
        session,
        DuplicatePayment(
            merchant_uid=charge.merchant_uid,
            imp_uid=charge.imp_uid,
            amount=charge.amount,
            first_charge_id=first,
            action=f"refund it: billing charges refund {charge.id} --reason duplicate",
        ),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )
    log(
        logger,
        "duplicate_payment",
        level=logging.ERROR,
        charge_id=charge.id,
        merchant_uid=charge.merchant_uid,
        first_charge_id=first,
    )


def _show_late_payment(session: Session, sub: Subscription, charge: Charge, now: datetime) -> None:
    """A charge sent before a cancel or pause was paid after it: the operator may refund."""
    kind = LATE_PAYMENT_EVENTS.get(SubscriptionStatus(sub.status))
    if kind is not None:
        record_event(
            session,
            kind(
                merchant_uid=charge.merchant_uid,
                amount=charge.amount,
                imp_uid=charge.imp_uid,
                action=f"refund it if it should not stand: billing charges refund {charge.id}",
            ),
            now,
            subscription_id=sub.id,
            charge_id=charge.id,
        )


def _advance(
    session: Session,
    sub: Subscription,
    charge: Charge,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> None:
    """The due period is paid: the next one becomes due (on the pending plan, if any)."""
    before = load_state(sub)
    plan = plans.version(session, charge.plan_id, charge.plan_version)
    next_plan = latest_plan(session, sub.next_plan_id) if sub.next_plan_id else None
    store_state(sub, record_payment(before, plan, next_plan))
    if next_plan is not None:
        sub.plan_version = next_plan.version
    sub.updated_at, sub.retry_at_once = now, False
    if before.status == SubscriptionStatus.PAST_DUE:
        record_event(
            session,
            PaymentRecovered(attempt=charge.attempt),
            now,
            subscription_id=sub.id,
            charge_id=charge.id,
        )
        queue_notice(
            session,
            plans.notice_settings(session),
            NoticeKind.PAYMENT_RECOVERED,
            sub,
            now,
            wall,
            charge=charge,
            attempts=charge.attempt,
        )


def settle_refunded(
    session: Session,
    charge: Charge,
    imp_uid: str,
    refunded: int,
    reason: str,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> None:
    """Paid, then cancelled at PortOne (its console) while we did not know: the period was
    paid, and the money given back is recorded as refunded."""
    settle_paid(session, charge, imp_uid, now, wall, plans)
    record_refund_at_portone(session, charge, refunded, reason, now)


def record_refund_at_portone(
    session: Session, charge: Charge, refunded: int, reason: str, now: datetime
) -> bool:
    """PortOne has refunded ``refunded`` KRW of this paid charge in all (its console): record
    what we did not know of. False when we knew it all already."""
    if charge.refunded_amount >= refunded:
        return False
    before = charge.refunded_amount
    charge.refunded_amount = min(charge.amount, refunded)
    record_event(
        session,
        ChargeRefunded(
            merchant_uid=charge.merchant_uid,
            imp_uid=charge.imp_uid,
            amount=charge.refunded_amount - before,
            refunded_amount=charge.refunded_amount,
            source="portone",
            reason=reason,
        ),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )
    return True


def settle_failed(
    session: Session,
    charge: Charge,
    reason: str,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> None:
    """Declined or refused: no money moved. The decline class and dunning decide what next."""
    decline_class = classify_decline(reason)
    charge.status, charge.fail_reason = ChargeStatus.FAILED, reason
    charge.decline_class = str(decline_class)
    charge.updated_at, charge.refusal = wall, None
    charge.resend_at, charge.next_lookup_at = None, None
    sub = lock_subscription(session, charge.subscription_id)
    record_event(
        session,
        ChargeFailed(
            merchant_uid=charge.merchant_uid,
            amount=charge.amount,
            reason=reason,
            decline_class=str(decline_class),
            period_no=charge.period_no,
            attempt=charge.attempt,
        ),
        now,
        subscription_id=sub.id,
        charge_id=charge.id,
    )
    if (sub.period_no, sub.attempt) != (charge.period_no, charge.attempt):
        return
    policy = plans.version(session, charge.plan_id, charge.plan_version).dunning
    hard = decline_class == DeclineClass.HARD
    card_updated, sub.retry_at_once = sub.retry_at_once, False
    # Dated when the attempt was made, not when its outcome was learned: a decline found by a
    # late reconciliation still gets every retry the policy promises (a slot that passed
    # while the outcome was unknown is made at once).
    decline = record_decline(
        load_state(sub),
        policy,
        min(now, charge.created_at),
        hard=hard and not card_updated,
        card_updated=card_updated,
    )
    apply_decline(session, sub, decline, now)
    if decline.action == DeclineAction.NONE:
        return
    settings = plans.notice_settings(session)
    retry = (
        sub.next_charge_at.isoformat()
        if decline.action == DeclineAction.RETRY and sub.next_charge_at
        else None
    )
    queue_notice(
        session,
        settings,
        NoticeKind.PAYMENT_FAILED,
        sub,
        now,
        wall,
        charge=charge,
        needs_new_card=hard and not card_updated,
        next_retry_at=retry,
    )
    queue_final_notice(session, plans, sub, decline, now, wall)


def apply_decline(session: Session, sub: Subscription, decline: Decline, now: datetime) -> None:
    store_state(sub, decline.state)
    sub.updated_at = now
    if decline.action == DeclineAction.CANCEL:
        sub.canceled_at = now
    elif decline.action == DeclineAction.PAUSE:
        sub.paused_at = now
    retry_at = sub.next_charge_at.isoformat() if sub.next_charge_at else None
    record_event(
        session, dunning_event(decline.action, sub.status, retry_at), now, subscription_id=sub.id
    )


def queue_final_notice(
    session: Session,
    plans: CatalogCache,
    sub: Subscription,
    decline: Decline,
    now: datetime,
    wall: datetime,
) -> None:
    """Dunning ended: tell that the subscription was canceled or paused."""
    kind = final_notice(decline.action)
    if kind is not None:
        queue_notice(
            session,
            plans.notice_settings(session),
            kind,
            sub,
            now,
            wall,
            reason="dunning exhausted",
        )


def chargeable(sub: Subscription) -> bool:
    return sub.status in CHARGEABLE_STATUSES


def void_charge(
    session: Session, charge: Charge, sub: Subscription, now: datetime, wall: datetime
) -> None:
    """A charge never sent (or PortOne has nothing for it) of a subscription canceled or
    paused meanwhile: it is not sent. No money moved, so no dunning follows (SPEC 5)."""
    reason = f"voided: {sub.status}"
    charge.status, charge.fail_reason, charge.decline_class = ChargeStatus.FAILED, reason, None
    charge.updated_at, charge.refusal = wall, None
    charge.resend_at, charge.next_lookup_at = None, None
    record_event(
        session,
        ChargeVoided(merchant_uid=charge.merchant_uid, amount=charge.amount, reason=reason),
        now,
        subscription_id=sub.id,
        charge_id=charge.id,
    )


def _supersede_unsent(session: Session, paid: Charge, wall: datetime) -> None:
    """Another attempt of a now-paid period that is waiting to be sent (pending: nothing of
    it is at PortOne) must not be sent: it would pay the period again."""
    others = session.scalars(
        select(Charge)
        .where(
            Charge.subscription_id == paid.subscription_id,
            Charge.period_no == paid.period_no,
            Charge.id != paid.id,
            Charge.status == ChargeStatus.PENDING,
        )
        .with_for_update(skip_locked=True)  # a locked one is being voided, or taken to send
    )
    for other in others:
        other.status, other.fail_reason, other.updated_at = ChargeStatus.FAILED, "superseded", wall
