"""The money invariants of SPEC section 2, checked against PortOne's own ledger.

Used by the demo, the chaos run and the end-to-end tests. ``ledger`` is every payment the
gateway holds (the sandbox's ``/__sandbox__/ledger``, or payments fetched from PortOne).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.services.claims import CHARGEABLE, OPEN


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: str


KINDS = (
    "paid_twice_for_a_period",
    "gateway_paid_twice_for_a_period",
    "gateway_payment_not_recorded",
    "recorded_paid_not_at_gateway",
    "charge_left_open",
    "due_period_not_attempted",
    "period_skipped",
    "non_integer_amount",
)


def check(session: Session, ledger: Iterable[Mapping[str, Any]], now: datetime) -> list[Anomaly]:
    charges = list(session.scalars(select(Charge)))
    subscriptions = list(session.scalars(select(Subscription)))
    payments = list(ledger)
    return [
        *_paid_twice(charges),
        *_gateway_paid_twice(payments),
        *_unrecorded(payments, charges),
        *_open(charges),
        *_overdue(subscriptions, now),
        *_gaps(subscriptions, charges),
        *_fractional(payments),
    ]


def summary(anomalies: list[Anomaly]) -> dict[str, int]:
    counts = Counter(a.kind for a in anomalies)
    return {kind: counts.get(kind, 0) for kind in KINDS}


def _paid_twice(charges: list[Charge]) -> list[Anomaly]:
    counts = Counter((c.subscription_id, c.period_no) for c in charges if c.status == "paid")
    return [
        Anomaly("paid_twice_for_a_period", f"subscription {s} period {p}: {n} paid")
        for (s, p), n in counts.items()
        if n > 1
    ]


def _period_of(merchant_uid: str) -> tuple[str, str] | None:
    parts = merchant_uid.split("-")
    return (parts[1], parts[2]) if len(parts) == 4 and parts[0] == "sub" else None


def _is_paid(payment: Mapping[str, Any]) -> bool:
    """Money moved and stayed (a cancelled payment was refunded)."""
    return payment.get("status") == "paid"


def _moved_money(payment: Mapping[str, Any]) -> bool:
    """Paid, or paid and refunded later; not a payment the PG cancelled before it was paid."""
    status, paid_at = payment.get("status"), payment.get("paid_at")
    was_paid = isinstance(paid_at, int | float) and not isinstance(paid_at, bool) and paid_at > 0
    return status == "paid" or (status == "cancelled" and was_paid)


def _gateway_paid_twice(payments: list[Mapping[str, Any]]) -> list[Anomaly]:
    counts = Counter(_period_of(str(p.get("merchant_uid"))) for p in payments if _is_paid(p))
    kind = "gateway_paid_twice_for_a_period"
    return [
        Anomaly(kind, f"subscription key {key[0]} period {key[1]}: {n} paid")
        for key, n in counts.items()
        if key is not None and n > 1
    ]


def _unrecorded(payments: list[Mapping[str, Any]], charges: list[Charge]) -> list[Anomaly]:
    recorded = {c.merchant_uid: c for c in charges}
    anomalies = []
    for payment in payments:
        if not _moved_money(payment):
            continue
        charge = recorded.get(str(payment.get("merchant_uid")))
        if charge is None or charge.status != "paid" or charge.imp_uid != payment.get("imp_uid"):
            state = "missing" if charge is None else f"{charge.status} imp_uid={charge.imp_uid}"
            where = f"{payment.get('merchant_uid')} {payment.get('imp_uid')}"
            anomalies.append(Anomaly("gateway_payment_not_recorded", f"{where}: {state}"))
    held = {str(p.get("merchant_uid")) for p in payments if _moved_money(p)}
    phantom = [c for c in charges if c.status == "paid" and c.merchant_uid not in held]
    anomalies += [Anomaly("recorded_paid_not_at_gateway", c.merchant_uid) for c in phantom]
    return anomalies


def _open(charges: list[Charge]) -> list[Anomaly]:
    return [
        Anomaly("charge_left_open", f"{c.merchant_uid} is {c.status}")
        for c in charges
        if c.status in OPEN
    ]


def _overdue(subscriptions: list[Subscription], now: datetime) -> list[Anomaly]:
    overdue = [
        s
        for s in subscriptions
        if s.status in CHARGEABLE and s.next_charge_at is not None and s.next_charge_at <= now
    ]
    return [
        Anomaly("due_period_not_attempted", f"subscription {s.id} due {s.next_charge_at}")
        for s in overdue
    ]


def _gaps(subscriptions: list[Subscription], charges: list[Charge]) -> list[Anomaly]:
    attempted: dict[int, set[int]] = defaultdict(set)
    for charge in charges:
        attempted[charge.subscription_id].add(charge.period_no)
    anomalies = []
    for sub in subscriptions:
        missing = set(range(1, sub.period_no)) - attempted[sub.id]
        if missing:
            anomalies.append(
                Anomaly("period_skipped", f"subscription {sub.id} periods {sorted(missing)}")
            )
    return anomalies


def _fractional(payments: list[Mapping[str, Any]]) -> list[Anomaly]:
    anomalies = []
    for payment in payments:
        amount = payment.get("amount")
        if isinstance(amount, bool) or Decimal(str(amount)) % 1 != 0:
            anomalies.append(
                Anomaly("non_integer_amount", f"{payment.get('merchant_uid')}: {amount!r}")
            )
    return anomalies
