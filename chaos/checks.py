"""The chaos run's own checks, on top of ``billing.invariants.check``.

The sandbox declines at random (a fault), so a good card may be declined too; but it is never
declined on purpose. Once the faults are off and the dunning retries have had time to run,
every period the calendar says is due must be paid, exactly once, at the calendar's amount.
The one excuse: dunning ran out because the sandbox really declined every attempt of a period
(how many attempts that takes depends on when each decline was learned: retry times that have
passed are not made up, see ``billing.domain.subscriptions.record_decline``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.calendar import Period, period_amount, periods
from billing.domain.plans import Catalog, Plan
from billing.invariants import Anomaly
from chaos.population import Cohort

KINDS = (
    "good_card_period_unpaid",  # a due period of a card never declined on purpose is not paid
    "paid_not_on_calendar",  # a paid charge whose period or amount is not the calendar's
    "paid_before_due",  # a period paid before the clock reached its start
    "paid_days_overlap",  # two paid charges of one subscription cover the same days
)


@dataclass
class Tally:
    periods_due: int = 0  # by the calendar, for good cards
    periods_paid: int = 0  # of those, paid
    ended_by_random_declines: int = 0  # good cards whose dunning ran out on real declines


def check(
    session: Session,
    catalog: Catalog,
    cohorts: Mapping[int, Cohort],
    ledger: Iterable[Mapping[str, Any]],
    now: datetime,
) -> tuple[list[Anomaly], Tally]:
    declined = {str(p.get("merchant_uid")) for p in ledger if p.get("status") == "failed"}
    charges: dict[int, list[Charge]] = defaultdict(list)
    for charge in session.scalars(select(Charge).order_by(Charge.id)):
        charges[charge.subscription_id].append(charge)
    anomalies: list[Anomaly] = []
    tally = Tally()
    for sub in session.scalars(select(Subscription).order_by(Subscription.id)):
        plan = catalog.plan(sub.plan_id)
        assert plan is not None, sub.plan_id
        due = list(itertools.takewhile(lambda p: p.start <= now, periods(plan, sub.started_at)))
        mine = charges[sub.id]
        anomalies += _on_calendar(sub, plan, due, mine)
        anomalies += _overlaps(sub, mine)
        if cohorts.get(sub.id) == Cohort.GOOD:
            anomalies += _all_paid(sub, plan, due, mine, declined, tally)
    return anomalies, tally


def _on_calendar(
    sub: Subscription, plan: Plan, due: list[Period], charges: list[Charge]
) -> list[Anomaly]:
    anomalies = []
    for charge in (c for c in charges if c.status == "paid"):
        where = f"subscription {sub.id} period {charge.period_no} ({charge.merchant_uid})"
        if charge.period_no > len(due):
            anomalies.append(Anomaly("paid_before_due", f"{where} starts after now"))
            continue
        period = due[charge.period_no - 1]
        expected = (period.start, period_amount(plan, period))
        if (charge.period_start, charge.amount) != expected:
            detail = f"{where}: {charge.period_start} {charge.amount} KRW, calendar {expected}"
            anomalies.append(Anomaly("paid_not_on_calendar", detail))
    return anomalies


def _overlaps(sub: Subscription, charges: list[Charge]) -> list[Anomaly]:
    """Whatever the period numbers say, no day is paid for twice."""
    paid = sorted((c for c in charges if c.status == "paid"), key=lambda c: c.period_start)
    return [
        Anomaly(
            "paid_days_overlap", f"subscription {sub.id}: {a.merchant_uid} and {b.merchant_uid}"
        )
        for a, b in itertools.pairwise(paid)
        if a.period_end > b.period_start
    ]


def _all_paid(
    sub: Subscription,
    plan: Plan,
    due: list[Period],
    charges: list[Charge],
    declined: set[str],
    tally: Tally,
) -> list[Anomaly]:
    paid = sorted(c.period_no for c in charges if c.status == "paid")
    tally.periods_due += len(due)
    tally.periods_paid += len(paid)
    if paid == list(range(1, len(due) + 1)):
        return []
    if _dunning_ran_out(sub, paid, charges, declined):
        tally.ended_by_random_declines += 1
        return []
    missing = sorted(set(range(1, len(due) + 1)) - set(paid))
    detail = (f"subscription {sub.id} ({sub.status}, plan {sub.plan_id}): periods {missing} of "
              f"{len(due)} due are not paid")  # fmt: skip
    return [Anomaly("good_card_period_unpaid", detail)]


def _dunning_ran_out(
    sub: Subscription, paid: list[int], charges: list[Charge], declined: set[str]
) -> bool:
    """Ended by dunning, every attempt of the unpaid period declined by the gateway itself."""
    if sub.status not in ("canceled", "paused") or paid != list(range(1, len(paid) + 1)):
        return False
    period = len(paid) + 1
    attempts = [c for c in charges if c.period_no == period]
    return (
        bool(attempts)
        and all(c.status == "failed" and c.merchant_uid in declined for c in attempts)
        and not any(c.period_no > period for c in charges)
    )
