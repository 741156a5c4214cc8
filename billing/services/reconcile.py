"""Resolving an open charge by asking PortOne about its merchant_uid.

A charge is looked up when its outcome was not seen (timeout, reset, 5xx, garbage), when
PortOne refused it (a refusal is believed only once the lookup finds nothing: "already
paid" after a restore from a backup is a refusal too), and before the first send of work
that our database may have lost track of (``claims.needs_lookup``). What each answer means
is ``billing.domain.charges.after_lookup``; this module takes the charge, and stores the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge
from billing.domain.answers import Found, Lookup
from billing.domain.charges import ChargeStatus, Timing, after_lookup, is_stuck
from billing.domain.events import Reconciled
from billing.domain.retry import lookup_lease
from billing.services.catalog_cache import CatalogCache
from billing.services.history import record_event
from billing.services.locks import lock_subscription
from billing.services.settlement import FollowUp, charge_state, store_step


@dataclass(frozen=True)
class ReconcileWork:
    charge_id: int
    merchant_uid: str
    amount: int


def begin_reconcile(session: Session, charge_id: int, timing: Timing) -> ReconcileWork | None:
    """Take an unknown charge (or a processing one silent past the window) for a lookup.

    Lookups only read, so a duplicate reconcile message costs one more lookup and nothing else.
    """
    query = select(Charge).where(Charge.id == charge_id).with_for_update(skip_locked=True)
    charge = session.scalar(query)
    if charge is None:
        return None
    if charge.status != ChargeStatus.UNKNOWN and not is_stuck(charge_state(charge), timing):
        return None  # settled, or back to pending for a resend: a duplicate message
    charge.status = ChargeStatus.UNKNOWN
    charge.resend_at, charge.next_lookup_at = None, timing.wall + lookup_lease(timing.window)
    charge.updated_at = timing.wall
    return ReconcileWork(charge.id, charge.merchant_uid, charge.amount)


def finish_reconcile(
    session: Session,
    work: ReconcileWork,
    lookup: Lookup,
    now: datetime,
    timing: Timing,
    plans: CatalogCache,
) -> FollowUp:
    charge = session.scalar(select(Charge).where(Charge.id == work.charge_id).with_for_update())
    assert charge is not None
    sub = lock_subscription(session, charge.subscription_id)
    state = charge_state(charge, sub)
    step = after_lookup(state, lookup, timing)
    record_event(
        session,
        Reconciled(
            merchant_uid=charge.merchant_uid,
            found=str(lookup.found),
            step=type(step).__name__,
            imp_uid=lookup.imp_uid,
            reason=lookup.reason,
            amount_matches=lookup.amount_matches,
            refusal=state.refusal,
            lookup=state.lookups + 1,
        ),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )
    charge.lookups = state.lookups + 1
    if lookup.found != Found.ERROR:
        charge.looked_up_at = timing.wall  # PortOne answered: a resend is not looked up again
    if charge.sends == 0 and lookup.found != Found.ERROR:
        # Looked up before it was ever sent (``claims.needs_lookup``): when PortOne knew it,
        # our database is behind PortOne's, and every further attempt of the subscription is
        # looked up before it is sent, until one is new to PortOne.
        sub.look_before_send = lookup.found != Found.NOTHING
        # PortOne declined an attempt this database never sent: its later attempts happened
        # too, and the dunning schedule already ran at PortOne. The next one is looked up at
        # once (it may be paid) instead of waiting for a slot, or dunning ending unseen.
        sub.retry_at_once = sub.retry_at_once or lookup.found == Found.DECLINED
    return store_step(session, charge, step, now, timing.wall, plans)
