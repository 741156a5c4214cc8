"""Pages of subscriptions, charges and events for the HTTP API: newest first, ``limit`` rows
after the row ``starting_after`` (by id), and whether more follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from billing.db.tables import Charge, Customer, Event, Subscription
from billing.domain.charges import ChargeStatus
from billing.errors import InvalidInput, NotFound
from billing.services.subscriptions import STATUSES, get_subscription

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
CHARGE_STATUSES = [str(status) for status in ChargeStatus]
Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    has_more: bool


def newest_first(
    session: Session,
    query: Select[Row],
    id_column: InstrumentedAttribute[int],
    limit: int,
    starting_after: int | None,
) -> Page[Row]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}, got {limit}")
    if starting_after is not None:
        query = query.where(id_column < starting_after)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit)


def page_subscriptions(
    session: Session,
    limit: int = DEFAULT_LIMIT,
    starting_after: int | None = None,
    *,
    status: str | None = None,
    customer_uid: str | None = None,
) -> Page[Subscription]:
    query = select(Subscription)
    if status is not None:
        query = query.where(Subscription.status == _one_of("status", status, STATUSES))
    if customer_uid is not None:
        query = query.join(Customer, Customer.id == Subscription.customer_id).where(
            Customer.customer_uid == customer_uid
        )
    return newest_first(session, query, Subscription.id, limit, starting_after)


def page_charges(
    session: Session,
    limit: int = DEFAULT_LIMIT,
    starting_after: int | None = None,
    *,
    subscription_id: int | None = None,
    status: str | None = None,
) -> Page[Charge]:
    query = select(Charge)
    if subscription_id is not None:
        query = query.where(Charge.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Charge.status == _one_of("status", status, CHARGE_STATUSES))
    return newest_first(session, query, Charge.id, limit, starting_after)


def page_events(
    session: Session,
    subscription_id: int,
    limit: int = DEFAULT_LIMIT,
    starting_after: int | None = None,
) -> Page[Event]:
    get_subscription(session, subscription_id)  # NotFound for an unknown subscription
    query = select(Event).where(Event.subscription_id == subscription_id)
    return newest_first(session, query, Event.id, limit, starting_after)


def _one_of(field: str, value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def get_charge(session: Session, charge_id: int) -> Charge:
    charge = session.get(Charge, charge_id)
    if charge is None:
        raise NotFound(f"no charge {charge_id}")
    return charge
