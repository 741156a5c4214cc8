"""Row locks in the one order every writer takes them: charges, then subscriptions, ids
ascending. A transaction that locks in another order can deadlock with the worker's
recording transaction, and a deadlock there is an answer from PortOne that must be kept."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.charges import OPEN_CHARGE_STATUSES

LOCKED = "billing.locked_subscriptions"  # Session.info key: rows locked FOR UPDATE, by id
OPEN = [str(status) for status in OPEN_CHARGE_STATUSES]


def lock_charges(session: Session, charge_ids: Sequence[int]) -> list[Charge]:
    query = select(Charge).where(Charge.id.in_(charge_ids)).order_by(Charge.id)
    return list(session.scalars(query.with_for_update()))


def lock_open_charges(session: Session, subscription_id: int) -> list[Charge]:
    """The subscription's open charges (at most one), locked: taken before the subscription."""
    query = select(Charge).where(Charge.subscription_id == subscription_id, Charge.status.in_(OPEN))
    return list(session.scalars(query.order_by(Charge.id).with_for_update()))


def lock_subscriptions(session: Session, subscription_ids: Sequence[int]) -> None:
    """Lock these subscriptions for the rest of the transaction (ids ascending), read as
    they are now (populate_existing: not as this session may have read them before). The
    rows are held until the transaction ends, so that ``lock_subscription`` finds them
    without another round trip (the identity map alone holds its objects weakly)."""
    query = select(Subscription).where(Subscription.id.in_(subscription_ids))
    query = query.order_by(Subscription.id).with_for_update()
    rows = session.scalars(query.execution_options(populate_existing=True))
    _locked(session).update((row.id, row) for row in rows)


def lock_subscription(session: Session, subscription_id: int) -> Subscription:
    """The subscription, locked: already, by ``lock_subscriptions``, or now."""
    locked = _locked(session)
    if subscription_id not in locked:
        lock_subscriptions(session, [subscription_id])
    sub = locked.get(subscription_id) or session.get(Subscription, subscription_id)
    assert sub is not None
    return sub


def _locked(session: Session) -> dict[int, Subscription]:
    """Subscriptions locked in the session's current transaction, by id."""
    transaction = session.get_transaction()
    held = session.info.get(LOCKED)
    if held is None or held[0] is not transaction:
        held = session.info[LOCKED] = (transaction, {})
    rows: dict[int, Subscription] = held[1]
    return rows
