"""Charging one charge row, in two short transactions around the PortOne call.

``begin_charges`` moves pending rows to processing and commits before anything is sent;
``finish_charges`` records the classified answers in a new transaction. No database
connection is held while PortOne is working. Both are idempotent by charge id: a duplicate
message finds the row already processing (or settled) and does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.answers import ChargeAnswer
from billing.domain.charges import (
    ChargeRequest,
    ChargeStatus,
    Timing,
    after_answer,
    looked_up_lately,
    voided,
)
from billing.domain.dunning import needs_lookup
from billing.domain.events import GatewayAnswer, LookupBeforeSend
from billing.domain.retry import lookup_lease
from billing.domain.statuses import CHARGEABLE_STATUSES
from billing.services.catalog_cache import CatalogCache
from billing.services.history import record_event
from billing.services.locks import lock_charges, lock_subscription, lock_subscriptions
from billing.services.settlement import (
    FollowUp,
    charge_state,
    note_siblings,
    store_step,
    void_charge,
)

CHARGEABLE = [str(status) for status in CHARGEABLE_STATUSES]


@dataclass(frozen=True)
class ChargeWork:
    """What the worker sends, read from the row when it became processing."""

    charge_id: int
    subscription_id: int
    request: ChargeRequest
    sends: int


@dataclass
class Begun:
    """What ``begin_charges`` took: the sends to make, and the charges to look up first."""

    works: list[ChargeWork] = field(default_factory=list)
    lookups: list[int] = field(default_factory=list)


def begin_charges(
    session: Session, charge_ids: Sequence[int], now: datetime, timing: Timing, plans: CatalogCache
) -> Begun:
    """Pending -> processing for every charge of ``charge_ids`` that is pending and due
    (committed by the caller before any request is sent). Rows another worker holds are
    skipped, and a duplicate message finds its rows no longer pending: both get nothing.
    A charge of a subscription canceled or paused meanwhile is voided, never sent; one old
    enough for our database to have lost a later attempt of its period is looked up first
    (``dunning.needs_lookup``: every send passes here, whatever published it)."""
    wall = timing.wall
    locked = (
        select(
            Charge.id,
            Subscription.status,
            Charge.created_at,
            Charge.plan_id,
            Charge.plan_version,
            Charge.looked_up_at,
        )
        .join(Subscription, Subscription.id == Charge.subscription_id)
        .where(
            Charge.id.in_(charge_ids),
            Charge.status == ChargeStatus.PENDING,
            or_(Charge.resend_at.is_(None), Charge.resend_at <= wall),
        )
        .order_by(Charge.id)
        .with_for_update(of=Charge, skip_locked=True)
    )
    rows = session.execute(locked).all()
    stopped = [row.id for row in rows if row.status not in CHARGEABLE]
    if stopped:
        _void(session, stopped, now, wall)
    begun = Begun()
    ids = []
    for row in rows:
        if row.status not in CHARGEABLE:
            continue
        policy = plans.version(session, row.plan_id, row.plan_version).dunning
        lately = looked_up_lately(row.looked_up_at, timing)
        why = needs_lookup(policy, False, row.created_at, now, looked_up_lately=lately)
        if why is None:
            ids.append(row.id)
        else:
            _look_first(session, row.id, why, now, timing)
            begun.lookups.append(row.id)
    if not ids:
        return begun
    statement = (
        update(Charge)
        .where(Charge.id.in_(ids))
        .values(
            status=ChargeStatus.PROCESSING,
            sends=Charge.sends + 1,
            sent_at=wall,
            updated_at=wall,
            resend_at=None,
            next_lookup_at=None,
        )
        .returning(
            Charge.id,
            Charge.subscription_id,
            Charge.customer_uid,
            Charge.merchant_uid,
            Charge.amount,
            Charge.name,
            Charge.card_quota,
            Charge.sends,
        )
        .execution_options(synchronize_session=False)
    )
    begun.works = sorted(
        (_work(row) for row in session.execute(statement)), key=lambda work: work.charge_id
    )
    return begun


def _look_first(session: Session, charge_id: int, why: str, now: datetime, timing: Timing) -> None:
    charge = session.get(Charge, charge_id)
    assert charge is not None
    charge.status, charge.updated_at = ChargeStatus.UNKNOWN, timing.wall
    charge.resend_at, charge.next_lookup_at = None, timing.wall + lookup_lease(timing.window)
    record_event(
        session,
        LookupBeforeSend(merchant_uid=charge.merchant_uid, reason=why),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )


def begin_charge(
    session: Session, charge_id: int, now: datetime, timing: Timing, plans: CatalogCache
) -> ChargeWork | None:
    """``begin_charges`` for one charge (None: nothing to send now)."""
    works = begin_charges(session, [charge_id], now, timing, plans).works
    return works[0] if works else None


def _void(session: Session, charge_ids: list[int], now: datetime, wall: datetime) -> None:
    for charge in session.scalars(select(Charge).where(Charge.id.in_(charge_ids))):
        sub = lock_subscription(session, charge.subscription_id)
        step = voided(charge_state(charge, sub))
        if step is not None:
            void_charge(session, charge, sub, now, wall)


def _work(row: Any) -> ChargeWork:
    request = ChargeRequest(
        customer_uid=row.customer_uid,
        merchant_uid=row.merchant_uid,
        amount=row.amount,
        name=row.name,
        card_quota=row.card_quota,
    )
    return ChargeWork(row.id, row.subscription_id, request, row.sends)


def finish_charges(
    session: Session,
    answers: Sequence[tuple[ChargeWork, ChargeAnswer]],
    now: datetime,
    timing: Timing,
    plans: CatalogCache,
) -> FollowUp:
    """Record PortOne's answers, all in the caller's transaction. A payment is always
    recorded; anything else only while the row is still the processing send this worker
    made. Charges, then their subscriptions, are locked up front in id order (the order every
    writer uses), and every write is flushed at commit: one round trip per table."""
    if not answers:
        return FollowUp()
    charges = lock_charges(session, [work.charge_id for work, _ in answers])
    lock_subscriptions(session, sorted({charge.subscription_id for charge in charges}))
    note_siblings(session, charges)
    follow = FollowUp()
    with session.no_autoflush:
        for work, answer in answers:
            follow.add(_finish(session, work, answer, now, timing, plans))
    return follow


def finish_charge(
    session: Session,
    work: ChargeWork,
    answer: ChargeAnswer,
    now: datetime,
    timing: Timing,
    plans: CatalogCache,
) -> FollowUp:
    """``finish_charges`` for one answer."""
    return finish_charges(session, [(work, answer)], now, timing, plans)


def _finish(
    session: Session,
    work: ChargeWork,
    answer: ChargeAnswer,
    now: datetime,
    timing: Timing,
    plans: CatalogCache,
) -> FollowUp:
    charge = session.get(Charge, work.charge_id)
    assert charge is not None
    record_event(
        session,
        GatewayAnswer(
            merchant_uid=charge.merchant_uid,
            amount=charge.amount,
            send=work.sends,
            outcome=str(answer.outcome),
            http_status=answer.http_status,
            code=answer.code,
            reason=answer.reason,
            imp_uid=answer.imp_uid,
        ),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )
    step = after_answer(charge_state(charge), answer, work.sends, timing)
    return store_step(session, charge, step, now, timing.wall, plans)
