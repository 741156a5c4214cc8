"""Refunds of paid charges through ``POST /payments/cancel``, with the discipline of charges.

``request_refund`` checks the request and writes the refund ``pending`` (one commit);
``begin_refund`` moves it to ``processing`` and counts the send (committed before the request
leaves); ``finish_refund`` records the classified answer in a new transaction. No database
connection is held while PortOne works.

Every refund carries ``checksum``, the refundable balance we believed in: PortOne refuses the
cancel when its balance differs, so sending a refund again can never refund twice. An outcome
not seen is ``unknown`` and is settled by looking the payment up (``GET /payments/{imp_uid}``):
its cancel history says whether this refund applied (``billing.portone.cancels``). When it did
not and the last send is older than BILLING_RECONCILE_AFTER, the refund is sent again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.tables import Charge, Refund
from billing.domain import retry
from billing.domain.charges import ChargeStatus
from billing.domain.events import (
    ChargeRefunded,
    EventPayload,
    RefundAnswer,
    RefundFailed,
    RefundFields,
    RefundReconciled,
    RefundRequested,
)
from billing.domain.refunds import (
    OPEN_REFUND_STATUSES,
    CancelAnswer,
    CancelOutcome,
    CancelRequest,
    RefundLookup,
    RefundStatus,
    Verdict,
    after_cancel,
    after_refund_lookup,
)
from billing.errors import Conflict, InvalidInput, NotFound
from billing.logs import log
from billing.portone.answers import Exchange
from billing.portone.cancels import PortOneCancels, classify_cancel, classify_lookup
from billing.portone.client import PortOneClient
from billing.services.history import record_event

logger = logging.getLogger("billing.refunds")

REASON_MAX = 200  # refunds.reason
TRANSIENT_TRIES = 3  # sends of one step whose request never left (or 401/429)
SEND: Literal["send"] = "send"


OPEN = [str(status) for status in OPEN_REFUND_STATUSES]


class RefundGateway(Protocol):
    def cancel(self, request: CancelRequest) -> Exchange: ...

    def payment(self, imp_uid: str) -> Exchange: ...


@dataclass(frozen=True)
class RefundWork:
    """What is sent, read from the row when it became processing."""

    refund_id: int
    charge_id: int
    request: CancelRequest
    resend: bool
    sends: int


@dataclass(frozen=True)
class LookupWork:
    refund_id: int
    charge_id: int
    imp_uid: str
    checksum: int
    amount: int
    sent_at: datetime | None


# -- asking for a refund -------------------------------------------------------------------------


def check_request(amount: int | None, reason: str) -> str:
    """The reason, trimmed; InvalidInput for a non-positive amount or an empty reason."""
    if amount is not None and amount <= 0:
        raise InvalidInput(f"--amount must be a positive number of KRW, got {amount}")
    trimmed = " ".join(reason.split())
    if not trimmed:
        raise InvalidInput("--reason must not be empty")
    if len(trimmed) > REASON_MAX:
        raise InvalidInput(f"--reason must be at most {REASON_MAX} characters")
    return trimmed


def request_refund(
    session: Session,
    charge_id: int,
    amount: int | None,
    reason: str,
    now: datetime,
    wall: datetime,
) -> Refund:
    """Write a pending refund of ``amount`` KRW (None: all that is left) of a paid charge."""
    reason = check_request(amount, reason)
    charge = session.scalar(select(Charge).where(Charge.id == charge_id).with_for_update())
    if charge is None:
        raise NotFound(f"no charge {charge_id}")
    balance = _refundable(session, charge)
    amount = balance if amount is None else amount
    if amount > balance:
        raise Conflict(
            f"--amount {amount} KRW is more than charge {charge.id} has left to refund: "
            f"{balance} KRW (paid {charge.amount}, refunded {charge.refunded_amount})"
        )
    refund = Refund(
        charge_id=charge.id,
        amount=amount,
        checksum=balance,
        reason=reason,
        status=RefundStatus.PENDING,
        sends=0,
        created_at=now,
        updated_at=wall,
    )
    session.add(refund)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"charge {charge.id} already has a refund in progress") from None
    _event(session, now, charge, RefundRequested(**_refund_fields(charge, refund)))
    return refund


def _refundable(session: Session, charge: Charge) -> int:
    """The balance left to refund; Conflict when the charge cannot be refunded now."""
    if charge.status != ChargeStatus.PAID or not charge.imp_uid:
        raise Conflict(f"charge {charge.id} is {charge.status}: only a paid charge is refunded")
    query = select(Refund).where(Refund.charge_id == charge.id, Refund.status.in_(OPEN))
    open_refund = session.scalar(query.limit(1))
    if open_refund is not None:
        raise Conflict(
            f"charge {charge.id} already has refund {open_refund.id} in progress "
            f"({open_refund.status}); it must be settled first (billing refunds reconcile)"
        )
    balance = charge.amount - charge.refunded_amount
    if balance <= 0:
        raise Conflict(f"charge {charge.id} is already refunded in full")
    return balance


# -- one send ------------------------------------------------------------------------------------


def begin_refund(session: Session, refund_id: int, wall: datetime) -> RefundWork | None:
    """Pending -> processing (committed by the caller before the request is sent)."""
    query = select(Refund).where(Refund.id == refund_id).with_for_update(skip_locked=True)
    refund = session.scalar(query)
    if refund is None or refund.status != RefundStatus.PENDING:
        return None
    charge = session.get(Charge, refund.charge_id)
    assert charge is not None and charge.imp_uid is not None
    resend = refund.sends > 0
    refund.status = RefundStatus.PROCESSING
    refund.sends += 1
    refund.sent_at = refund.updated_at = wall
    request = CancelRequest(
        imp_uid=charge.imp_uid,
        merchant_uid=charge.merchant_uid,
        amount=refund.amount,
        checksum=refund.checksum,
        reason=refund.reason,
    )
    return RefundWork(refund.id, charge.id, request, resend, refund.sends)


def finish_refund(
    session: Session, work: RefundWork, answer: CancelAnswer, now: datetime, wall: datetime
) -> str:
    """Record PortOne's answer; returns the refund's status. A success is always recorded;
    anything else only while the row is still the processing send this caller made."""
    charge, refund = _lock(session, work.charge_id, work.refund_id)
    _event(
        session,
        now,
        charge,
        RefundAnswer(
            **_refund_fields(charge, refund),
            send=work.sends,
            outcome=str(answer.outcome),
            http_status=answer.http_status,
            code=answer.code,
            reason=answer.reason,
            gateway_cancelled=answer.cancelled,
        ),
    )
    verdict = after_cancel(
        RefundStatus(refund.status), refund.sends == work.sends, answer, resend=work.resend
    )
    if verdict == Verdict.SUCCEEDED:
        settle_refunded(session, charge, refund, answer.cancellation_id, now, wall)
    elif verdict == Verdict.FAILED:
        settle_refund_failed(session, charge, refund, answer.reason, now, wall)
    elif verdict == Verdict.WAIT:
        refund.status, refund.fail_reason = RefundStatus.UNKNOWN, answer.reason
        refund.updated_at = wall
    return refund.status


def settle_refunded(
    session: Session,
    charge: Charge,
    refund: Refund,
    cancellation_id: str | None,
    now: datetime,
    wall: datetime,
) -> None:
    """PortOne applied this refund: record it on the charge (once)."""
    if refund.status == RefundStatus.SUCCEEDED:
        return
    refund.status, refund.fail_reason, refund.updated_at = RefundStatus.SUCCEEDED, None, wall
    charge.refunded_amount = min(charge.amount, charge.refunded_amount + refund.amount)
    _event(
        session,
        now,
        charge,
        ChargeRefunded(
            **_refund_fields(charge, refund),
            cancellation_id=cancellation_id,
            refunded_amount=charge.refunded_amount,
            refundable=charge.amount - charge.refunded_amount,
        ),
    )


def settle_refund_failed(
    session: Session, charge: Charge, refund: Refund, reason: str, now: datetime, wall: datetime
) -> None:
    """Refused, or never sent: no money moved."""
    refund.status, refund.fail_reason, refund.updated_at = RefundStatus.FAILED, reason, wall
    _event(session, now, charge, RefundFailed(**_refund_fields(charge, refund), reason=reason))


# -- reconciliation ------------------------------------------------------------------------------


def refunds_to_reconcile(
    session: Session,
    wall: datetime,
    window: timedelta,
    limit: int,
    *,
    lookup_every: float = retry.LOOKUP_EVERY,
) -> list[int]:
    """Refunds for the scheduler's sweep to hand to ``billing.refund``: unknown ones not
    looked up for ``lookup_every`` seconds, processing ones silent past the window (their
    process died), and pending ones left past the window (their process died before
    sending)."""
    old = wall - window
    due = or_(
        and_(
            Refund.status == RefundStatus.UNKNOWN,
            Refund.updated_at <= wall - timedelta(seconds=lookup_every),
        ),
        and_(
            Refund.status.in_([RefundStatus.PROCESSING, RefundStatus.PENDING]),
            Refund.updated_at <= old,
        ),
    )
    query = select(Refund).where(due).order_by(Refund.id).limit(limit)
    refunds = session.scalars(query.with_for_update(skip_locked=True)).all()
    for refund in refunds:
        if refund.status == RefundStatus.PROCESSING or refund.sends > 0:
            refund.status = RefundStatus.UNKNOWN  # it may have reached PortOne: look it up
        refund.updated_at = wall  # not handed out again before LOOKUP_EVERY
    return [refund.id for refund in refunds]


def begin_lookup(
    session: Session, refund_id: int, wall: datetime, window: timedelta
) -> LookupWork | Literal["send"] | None:
    """Take a refund for a lookup; ``"send"`` for a pending refund that was never sent."""
    query = select(Refund).where(Refund.id == refund_id).with_for_update(skip_locked=True)
    refund = session.scalar(query)
    if refund is None:
        return None
    if refund.status == RefundStatus.PENDING and refund.sends == 0:
        return SEND
    stuck = refund.status == RefundStatus.PROCESSING and refund.updated_at <= wall - window
    resend_lost = refund.status == RefundStatus.PENDING
    if refund.status != RefundStatus.UNKNOWN and not stuck and not resend_lost:
        return None  # settled, or a send is in flight
    refund.status, refund.updated_at = RefundStatus.UNKNOWN, wall
    charge = session.get(Charge, refund.charge_id)
    assert charge is not None and charge.imp_uid is not None
    return LookupWork(
        refund.id, charge.id, charge.imp_uid, refund.checksum, refund.amount, refund.sent_at
    )


def finish_lookup(
    session: Session,
    work: LookupWork,
    lookup: RefundLookup,
    now: datetime,
    wall: datetime,
    window: timedelta,
) -> Verdict | None:
    """Act on the lookup; None when another process settled the refund meanwhile."""
    charge, refund = _lock(session, work.charge_id, work.refund_id)
    verdict = after_refund_lookup(lookup, work.sent_at, wall, window)
    _event(
        session,
        now,
        charge,
        RefundReconciled(
            **_refund_fields(charge, refund),
            found=str(lookup.applied),
            verdict=str(verdict),
            gateway_cancelled=lookup.cancelled,
            reason=lookup.reason,
        ),
    )
    if verdict == Verdict.SUCCEEDED:
        settle_refunded(session, charge, refund, lookup.cancellation_id, now, wall)
        return verdict
    if refund.status != RefundStatus.UNKNOWN:
        return None
    if verdict == Verdict.FAILED:
        settle_refund_failed(session, charge, refund, lookup.reason, now, wall)
    elif verdict == Verdict.RESEND:
        refund.status, refund.updated_at = RefundStatus.PENDING, wall
    else:
        refund.updated_at = wall
    return verdict


# -- running the steps ---------------------------------------------------------------------------


class RefundRunner:
    """Each step between two short transactions; the PortOne call holds no connection."""

    def __init__(
        self,
        app: App,
        gateway: RefundGateway | PortOneClient,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.jitter = jitter
        self.gateway = PortOneCancels(gateway) if isinstance(gateway, PortOneClient) else gateway
        self.sleep = sleep
        self.window = timedelta(seconds=app.settings.reconcile_after)

    def refund(self, charge_id: int, amount: int | None, reason: str) -> int:
        """Ask, send, and when the outcome was not seen, look it up once; the refund id."""
        now = self.app.clocks.billing.now()
        with self.app.transaction() as session:
            refund_id = request_refund(
                session, charge_id, amount, reason, now, self.app.clocks.system.now()
            ).id
        if self.send(refund_id) == RefundStatus.UNKNOWN:
            self.sleep(retry.FIRST_REFUND_LOOKUP_DELAY)
            self.reconcile(refund_id)
        return refund_id

    def send(self, refund_id: int) -> str | None:
        """Send one pending refund and record the outcome; None when there was nothing to do."""
        with self.app.transaction() as session:
            work = begin_refund(session, refund_id, self.app.clocks.system.now())
        if work is None:
            return None
        answer = self._cancel(work)
        log(
            logger,
            "refund_answer",
            refund_id=work.refund_id,
            charge_id=work.charge_id,
            amount=work.request.amount,
            send=work.sends,
            outcome=str(answer.outcome),
            http_status=answer.http_status,
            code=answer.code,
            reason=answer.reason,
        )
        now = self.app.clocks.billing.now()
        with self.app.transaction() as session:
            return finish_refund(session, work, answer, now, self.app.clocks.system.now())

    def reconcile(self, refund_id: int) -> str | None:
        """Settle one open refund with PortOne; its status after, None when nothing to do."""
        with self.app.transaction() as session:
            work = begin_lookup(session, refund_id, self.app.clocks.system.now(), self.window)
        if work is None:
            return None
        if work == SEND:
            return self.send(refund_id)
        assert isinstance(work, LookupWork)
        exchange = self.gateway.payment(work.imp_uid)
        lookup = classify_lookup(exchange, work.imp_uid, work.checksum, work.amount)
        log(
            logger,
            "refund_lookup",
            refund_id=work.refund_id,
            found=str(lookup.applied),
            reason=lookup.reason,
        )
        now = self.app.clocks.billing.now()
        with self.app.transaction() as session:
            verdict = finish_lookup(
                session, work, lookup, now, self.app.clocks.system.now(), self.window
            )
        if verdict == Verdict.RESEND:
            return self.send(refund_id)
        with self.app.transaction() as session:
            refund = session.get(Refund, refund_id)
            return refund.status if refund is not None else None

    def _cancel(self, work: RefundWork) -> CancelAnswer:
        """One send; a request that never left (or 401/429) is tried again a few times."""
        answer = classify_cancel(
            self.gateway.cancel(work.request), work.request, resend=work.resend
        )
        for tries in range(1, TRANSIENT_TRIES):
            if answer.outcome != CancelOutcome.TRANSIENT:
                break
            self.sleep(retry.REFUND_NOT_SENT.delay(tries, self.jitter()))
            exchange = self.gateway.cancel(work.request)
            answer = classify_cancel(exchange, work.request, resend=work.resend)
        return answer


def reconcile_refund(
    app: App, gateway: RefundGateway | PortOneClient, refund_id: int
) -> str | None:
    """The ``billing.refund`` task: settle one open refund (send it, look it up, re-send)."""
    return RefundRunner(app, gateway).reconcile(refund_id)


# -- helpers -------------------------------------------------------------------------------------


def _lock(session: Session, charge_id: int, refund_id: int) -> tuple[Charge, Refund]:
    """The charge, then the refund, locked (always in this order)."""
    charge = session.scalar(select(Charge).where(Charge.id == charge_id).with_for_update())
    refund = session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    assert charge is not None and refund is not None
    return charge, refund


def _event(session: Session, now: datetime, charge: Charge, payload: EventPayload) -> None:
    record_event(session, payload, now, subscription_id=charge.subscription_id, charge_id=charge.id)


def _refund_fields(charge: Charge, refund: Refund) -> RefundFields:
    return RefundFields(
        refund_id=refund.id,
        merchant_uid=charge.merchant_uid,
        imp_uid=charge.imp_uid,
        amount=refund.amount,
        checksum=refund.checksum,
        refund_reason=refund.reason,
    )
