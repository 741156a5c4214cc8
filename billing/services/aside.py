"""Setting aside what no code expected (invariant 10): one bad row never stops the
scheduler or a worker for everybody else. It is kept out of the way with a reason an
operator sees (``billing status``, ``/metrics``, the subscription's history), and the rest
go on. A row set aside is tried again after an hour, after ``billing plans load``, or after
any lifecycle command on its subscription."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.charges import ChargeStatus
from billing.domain.events import SetAside
from billing.logs import log
from billing.services.history import record_event

logger = logging.getLogger("billing.aside")
SET_ASIDE_RETRY = timedelta(hours=1)  # system clock
MAX_REASON = 300


def describe(exc: BaseException) -> str:
    """A one-line reason for an operator, from an error no code expected."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} where one was expected (a plan or customer that vanished)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:MAX_REASON]


def set_aside(
    session: Session, subscription_id: int, reason: str, now: datetime, wall: datetime
) -> None:
    """Keep a subscription out of the claim loop; the history says why (once per reason)."""
    previous = session.scalar(
        select(Subscription.set_aside_reason).where(Subscription.id == subscription_id)
    )
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(set_aside_reason=reason, set_aside_at=wall)
        .execution_options(synchronize_session=False)
    )
    if reason != previous:
        record_event(session, SetAside(reason=reason), now, subscription_id=subscription_id)
        log(
            logger, "set_aside", level=logging.ERROR, subscription_id=subscription_id, reason=reason
        )


def keep_answer(
    session: Session,
    charge_id: int,
    paid_imp_uid: str | None,
    reason: str,
    now: datetime,
    wall: datetime,
) -> None:
    """Recording PortOne's answer failed for this charge alone. A payment is kept (the
    charge is paid: invariant 3); anything else is asked again in an hour, not in a loop.
    Its subscription is set aside for a person either way."""
    charge = session.get(Charge, charge_id, with_for_update=True)
    if charge is None:
        return
    if paid_imp_uid is not None and charge.status != ChargeStatus.PAID:
        charge.status, charge.imp_uid, charge.paid_at = ChargeStatus.PAID, paid_imp_uid, now
        charge.refusal, charge.resend_at, charge.next_lookup_at = None, None, None
    elif charge.status in (ChargeStatus.PROCESSING, ChargeStatus.UNKNOWN):
        charge.status = ChargeStatus.UNKNOWN
        charge.resend_at, charge.next_lookup_at = None, wall + SET_ASIDE_RETRY
    charge.updated_at = wall
    set_aside(session, charge.subscription_id, f"charge {charge.merchant_uid}: {reason}", now, wall)
