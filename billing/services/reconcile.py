"""Resolving an open charge by asking PortOne about its merchant_uid.

A charge is looked up when its outcome was not seen (timeout, reset, 5xx, garbage), when
PortOne refused it (a refusal is believed only once the lookup finds nothing: "already
paid" after a restore from a backup is a refusal too), and before the first send of work
that our database may have lost track of (``claims.needs_lookup``). What PortOne says:

- paid: paid. Paid and then cancelled at PortOne (its console): paid, and refunded.
- failed, net-cancelled before it was paid, or left ready: no money moved; a decline.
- nothing: a refusal is a decline with the refusal's reason; otherwise the same merchant_uid
  is sent again once the last send is older than the reconciliation window
  (BILLING_RECONCILE_AFTER), and voided instead if the subscription was canceled or paused.
- the lookup failed: asked again with a capped exponential backoff (never in a loop).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge
from billing.domain import retry
from billing.domain.charges import ChargeStatus
from billing.portone.answers import Found, Lookup
from billing.services.charging import FollowUp
from billing.services.history import record_event
from billing.services.locks import lock_subscription
from billing.services.plan_cache import PlanCache
from billing.services.settlement import (
    chargeable,
    settle_failed,
    settle_paid,
    settle_refunded,
    void_charge,
)

LOOKUP_LEASE = 60.0  # seconds a reconciler owns an unknown charge while it asks PortOne...
LOOKUP_EVERY = 15.0  # seconds between lookups while nothing is found inside the window
LOOKUP_FLOOR = 1.0  # never sooner than this after the last lookup


@dataclass(frozen=True)
class ReconcileWork:
    charge_id: int
    merchant_uid: str
    amount: int
    sent_at: datetime | None
    refusal: str | None = None
    lookups: int = 0


class Verdict(StrEnum):
    PAID = "paid"
    REFUNDED = "refunded"
    FAILED = "failed"
    RESEND = "resend"
    WAIT = "wait"


def decide(
    lookup: Lookup, refusal: str | None, sent_at: datetime | None, wall: datetime,
    window: timedelta,
) -> Verdict:  # fmt: skip
    """What to do with an open charge, given what PortOne says (pure)."""
    if lookup.found == Found.PAID:
        return Verdict.PAID
    if lookup.found == Found.REFUNDED:
        return Verdict.REFUNDED
    if lookup.found == Found.DECLINED:
        return Verdict.FAILED
    if lookup.found == Found.NOTHING:
        if refusal is not None:
            return Verdict.FAILED
        if sent_at is None or wall - sent_at >= window:
            return Verdict.RESEND
    return Verdict.WAIT


def lookup_lease(window: timedelta) -> timedelta:
    """...or the reconciliation window, if that is shorter: a lookup whose message was lost
    (a worker killed while it held it) is handed out again after this. Two lookups of one
    charge at once cost one more GET and nothing else (``finish_reconcile`` locks the row)."""
    return min(timedelta(seconds=LOOKUP_LEASE), window)


def next_lookup(
    lookup: Lookup, work: ReconcileWork, wall: datetime, window: timedelta,
    jitter: Callable[[], float] = random.random,
) -> float:  # fmt: skip
    """Seconds until the next lookup of a charge that is still open after this one.

    Nothing found inside the window: soon, and no later than the moment the window closes
    (a bounded number of lookups). A lookup that failed: capped exponential backoff."""
    if lookup.found == Found.NOTHING and work.sent_at is not None:
        remaining = (work.sent_at + window - wall).total_seconds()
        return max(LOOKUP_FLOOR, min(LOOKUP_EVERY, remaining))
    return max(LOOKUP_FLOOR, retry.LOOKUP.delay(work.lookups + 1, jitter()))


def begin_reconcile(
    session: Session, charge_id: int, wall: datetime, window: timedelta
) -> ReconcileWork | None:
    """Take an unknown charge (or a processing one silent past the window) for a lookup.

    Lookups only read, so a duplicate reconcile message costs one more lookup and nothing else.
    """
    query = select(Charge).where(Charge.id == charge_id).with_for_update(skip_locked=True)
    charge = session.scalar(query)
    if charge is None:
        return None
    stuck = charge.status == ChargeStatus.PROCESSING and charge.updated_at <= wall - window
    if charge.status != ChargeStatus.UNKNOWN and not stuck:
        return None  # settled, or back to pending for a resend: a duplicate message
    charge.status = ChargeStatus.UNKNOWN
    charge.retry_at = wall + lookup_lease(window)
    charge.updated_at = wall
    return ReconcileWork(
        charge.id, charge.merchant_uid, charge.amount, charge.sent_at, charge.refusal,
        charge.lookups,
    )  # fmt: skip


def finish_reconcile(
    session: Session,
    work: ReconcileWork,
    lookup: Lookup,
    now: datetime,
    wall: datetime,
    window: timedelta,
    plans: PlanCache,
) -> FollowUp:
    charge = session.scalar(select(Charge).where(Charge.id == work.charge_id).with_for_update())
    assert charge is not None
    verdict = decide(lookup, work.refusal, work.sent_at, wall, window)
    record_event(
        session, "reconciled", now, subscription_id=charge.subscription_id, charge_id=charge.id,
        merchant_uid=charge.merchant_uid, found=str(lookup.found), verdict=str(verdict),
        imp_uid=lookup.imp_uid, reason=lookup.reason, amount_matches=lookup.amount_matches,
        refusal=work.refusal, lookup=work.lookups + 1,
    )  # fmt: skip
    charge.lookups = work.lookups + 1
    if verdict in (Verdict.PAID, Verdict.REFUNDED):
        assert lookup.imp_uid is not None
        _remember_history(session, charge, lookup)
        if verdict == Verdict.REFUNDED:
            settle_refunded(session, charge, lookup.imp_uid, lookup.refunded, lookup.reason,
                            now, wall, plans)  # fmt: skip
        else:
            settle_paid(session, charge, lookup.imp_uid, now, wall, plans)
        return FollowUp()
    if charge.status != ChargeStatus.UNKNOWN:
        return FollowUp()
    _remember_history(session, charge, lookup)
    if verdict == Verdict.FAILED:
        reason = lookup.reason if lookup.found == Found.DECLINED else work.refusal or ""
        settle_failed(session, charge, reason, now, wall, plans)
        return FollowUp()
    if verdict == Verdict.RESEND:
        return _resend(session, charge, now, wall)
    delay = next_lookup(lookup, work, wall, window)
    charge.retry_at, charge.updated_at = wall + timedelta(seconds=delay), wall
    return FollowUp(reconcile=[charge.id], countdown=delay)


def _resend(session: Session, charge: Charge, now: datetime, wall: datetime) -> FollowUp:
    """PortOne has nothing: send the same merchant_uid again, unless the subscription was
    canceled or paused meanwhile (then nothing is ever sent: SPEC 2.8)."""
    sub = lock_subscription(session, charge.subscription_id)
    if not chargeable(sub):
        void_charge(session, charge, sub, now, wall)
        return FollowUp()
    charge.status, charge.retry_at, charge.updated_at = ChargeStatus.PENDING, None, wall
    return FollowUp(charge=[charge.id])


def _remember_history(session: Session, charge: Charge, lookup: Lookup) -> None:
    """A charge we never sent, looked up first (``claims.needs_lookup``): when PortOne knew
    it, our database is behind PortOne's and every further attempt of the subscription is
    looked up before it is sent, until one is new to PortOne."""
    if charge.sends or lookup.found == Found.ERROR:
        return
    sub = lock_subscription(session, charge.subscription_id)
    sub.look_before_send = lookup.found != Found.NOTHING
