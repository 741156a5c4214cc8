"""Row locks in the one order every writer takes them: charges, then subscriptions, ids
ascending. A transaction that locks in another order can deadlock with the worker's
recording transaction, and a deadlock there is an answer from PortOne that must be kept."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.charges import OPEN_CHARGE_STATUSES

LOCKED = "billing.locked_subscriptions"  # Session.info key: ids locked FOR UPDATE
OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]


def lock_charges(session: Session, charge_ids: Sequence[int]) -> list[Charge]:
    query = select(Charge).where(Charge.id.in_(charge_ids)).order_by(Charge.id)
    return list(session.scalars(query.with_for_update()))


def lock_open_charges(session: Session, subscription_id: int) -> list[Charge]:
    """The subscription's open charges (at most one), locked: taken before the subscription."""
    query = select(Charge).where(Charge.subscription_id == subscription_id, Charge.status.in_(OPEN))
    return list(session.scalars(query.order_by(Charge.id).with_for_update()))


def lock_subscriptions(session: Session, subscription_ids: Sequence[int]) -> None:
    """Lock these subscriptions for the rest of the transaction (ids ascending)."""
    query = select(Subscription).where(Subscription.id.in_(subscription_ids))
    rows = session.scalars(query.order_by(Subscription.id).with_for_update())
    _locked(session).update(row.id for row in rows)


def lock_subscription(session: Session, subscription_id: int) -> Subscription:
    """The subscription, locked: already, by ``lock_subscriptions``, or now."""
    if subscription_id not in _locked(session):
        lock_subscriptions(session, [subscription_id])
    sub = session.get(Subscription, subscription_id)
    assert sub is not None
    return sub


def _locked(session: Session) -> set[int]:
    """Subscription ids locked in the session's current transaction."""
    transaction = session.get_transaction()
    held = session.info.get(LOCKED)
    if held is None or held[0] is not transaction:
        held = session.info[LOCKED] = (transaction, set())
    ids: set[int] = held[1]
    return ids
