"""Finding a subscription by what a person has in hand: a customer_uid, a subscription id,
a merchant_uid (ours, ``sub-...``) or an imp_uid (PortOne's). Exact matches only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Customer, Subscription
from billing.errors import InvalidInput

MAX_QUERY = 100
MAX_ID = 2**63 - 1  # ids are PostgreSQL bigints
SHOWN = 100
DIGITS = re.compile("[0-9]{1,19}")


@dataclass(frozen=True)
class Match:
    subscription_id: int
    customer_uid: str
    plan_id: str
    status: str
    found_by: str  # "subscription id", "customer_uid", "merchant_uid" or "imp_uid"


def find_subscriptions(session: Session, text: str) -> list[Match]:
    """Every subscription the text names, in the order of the ways it can name one."""
    wanted = text.strip()
    if not wanted:
        raise InvalidInput("type a customer_uid, a subscription id, a merchant_uid or an imp_uid")
    if len(wanted) > MAX_QUERY:
        raise InvalidInput(f"search: at most {MAX_QUERY} characters")
    found: dict[int, Match] = {}
    for how, ids in _candidates(session, wanted):
        for match in _matches(session, ids, how):
            found.setdefault(match.subscription_id, match)
    return list(found.values())


def _candidates(session: Session, wanted: str) -> list[tuple[str, list[int]]]:
    ways: list[tuple[str, list[int]]] = []
    if DIGITS.fullmatch(wanted) and int(wanted) <= MAX_ID:
        ways.append(("subscription id", [int(wanted)]))
    by_customer = (
        select(Subscription.id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(Customer.customer_uid == wanted)
    )
    ways.append(("customer_uid", _ids(session, by_customer)))
    by_merchant_uid = select(Charge.subscription_id).where(Charge.merchant_uid == wanted)
    ways.append(("merchant_uid", _ids(session, by_merchant_uid)))
    if wanted.startswith("imp"):  # PortOne's imp_uid (ix_charges_imp_uid)
        by_imp_uid = select(Charge.subscription_id).where(Charge.imp_uid == wanted)
        ways.append(("imp_uid", _ids(session, by_imp_uid)))
    return ways


def _ids(session: Session, query: Select[int]) -> list[int]:
    return list(session.scalars(query.limit(SHOWN)))


def _matches(session: Session, ids: list[int], how: str) -> list[Match]:
    if not ids:
        return []
    query = (
        select(Subscription.id, Customer.customer_uid, Subscription.plan_id, Subscription.status)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(Subscription.id.in_(ids))
        .order_by(Subscription.id.desc())
    )
    return [Match(sid, uid, plan, status, how) for sid, uid, plan, status in session.execute(query)]
