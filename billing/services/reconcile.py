"""Resolving an unknown outcome by asking PortOne about the merchant_uid.

If PortOne holds it paid, it is paid. If every attempt PortOne knows failed, it failed. If
PortOne knows nothing and the last send is older than the reconciliation window
(BILLING_RECONCILE_AFTER), the same merchant_uid is sent again; before that we keep asking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge
from billing.domain.charges import ChargeStatus
from billing.portone.answers import Found, Lookup
from billing.services.charging import FollowUp, settle_failed, settle_paid
from billing.services.history import record_event
from billing.services.plan_cache import PlanCache

LOOKUP_LEASE = 60.0  # seconds a reconciler owns an unknown charge while it asks PortOne
LOOKUP_EVERY = 15.0  # seconds between lookups while nothing is found inside the window


@dataclass(frozen=True)
class ReconcileWork:
    charge_id: int
    merchant_uid: str
    amount: int
    sent_at: datetime | None


class Verdict(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    RESEND = "resend"
    WAIT = "wait"


def decide(lookup: Lookup, sent_at: datetime | None, wall: datetime, window: timedelta) -> Verdict:
    """What to do with an unknown charge, given what PortOne says (pure)."""
    if lookup.found == Found.PAID:
        return Verdict.PAID
    if lookup.found == Found.DECLINED:
        return Verdict.FAILED
    if lookup.found == Found.NOTHING and (sent_at is None or wall - sent_at >= window):
        return Verdict.RESEND
    return Verdict.WAIT


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
    charge.retry_at = wall + timedelta(seconds=LOOKUP_LEASE)
    charge.updated_at = wall
    return ReconcileWork(charge.id, charge.merchant_uid, charge.amount, charge.sent_at)


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
    verdict = decide(lookup, work.sent_at, wall, window)
    record_event(
        session, "reconciled", now, subscription_id=charge.subscription_id, charge_id=charge.id,
        merchant_uid=charge.merchant_uid, found=str(lookup.found), verdict=str(verdict),
        imp_uid=lookup.imp_uid, reason=lookup.reason, amount_matches=lookup.amount_matches,
    )  # fmt: skip
    if verdict == Verdict.PAID:
        assert lookup.imp_uid is not None
        settle_paid(session, charge, lookup.imp_uid, now, wall, plans)
        return FollowUp()
    if charge.status != ChargeStatus.UNKNOWN:
        return FollowUp()
    if verdict == Verdict.FAILED:
        settle_failed(session, charge, lookup.reason, now, wall, plans)
        return FollowUp()
    if verdict == Verdict.RESEND:
        charge.status, charge.retry_at, charge.updated_at = ChargeStatus.PENDING, None, wall
        return FollowUp(charge=[charge.id])
    delay = _next_lookup(work.sent_at, wall, window)
    charge.retry_at, charge.updated_at = wall + timedelta(seconds=delay), wall
    return FollowUp(reconcile=[charge.id], countdown=delay)


def _next_lookup(sent_at: datetime | None, wall: datetime, window: timedelta) -> float:
    """Ask again soon, and no later than the moment the window closes."""
    if sent_at is None:
        return LOOKUP_EVERY
    remaining = (sent_at + window - wall).total_seconds()
    return max(0.5, min(LOOKUP_EVERY, remaining))
