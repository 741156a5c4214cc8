"""Who is billed: customers, their subscriptions and how their cards behave.

Subscriptions are created straight through the services in a few transactions (fast, and
the same code path as ``billing subscriptions create``). Anchors spread over the first month,
with many on the 29th to the 31st, so that month-end clamping is exercised every month.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session

from billing.services.customers import add_customer
from billing.services.subscriptions import create_subscription

# The chaos catalog's plans (chaos/plans.yaml: the shipped ones, a daily plan and two
# nightly cron plans in daylight-saving zones) and how common each one is, in 1000ths.
PLAN_WEIGHTS = {
    "basic-monthly": 430,
    "standard-monthly-trial": 260,
    "premium-yearly": 90,
    "team-calendar": 175,
    "daily": 15,
    "nightly-sydney": 15,
    "nightly-new-york": 15,
}
# The short run (CI) ends before either clock change (2027-03-14 and 2027-04-04): the nightly
# plans would only add load there, so it bills the daily plan alone among the frequent ones.
SHORT_PLAN_WEIGHTS = {**PLAN_WEIGHTS, "daily": 10, "nightly-sydney": 0, "nightly-new-york": 0}
MONTH_END_SHARE = 0.45  # of anchors on the 29th to the 31st
BATCH = 250  # subscriptions per transaction


class Cohort(StrEnum):
    GOOD = "good"  # never declined on purpose: every due period must end up paid
    ALWAYS_DECLINE = "always_decline"  # dunning runs out, then cancel or pause
    DECLINES_TWICE = "declines_twice"  # two declines, then it pays
    OPERATED = "operated"  # good card; operators cancel, pause, resume and change its plan


COHORT_SHARES = (
    (Cohort.ALWAYS_DECLINE, 0.04),
    (Cohort.DECLINES_TWICE, 0.06),
    (Cohort.OPERATED, 0.08),
)


@dataclass(frozen=True)
class Member:
    customer_uid: str
    plan_id: str
    start: datetime
    cohort: Cohort


@dataclass
class Population:
    members: list[Member] = field(default_factory=list)
    subscription_ids: dict[str, int] = field(default_factory=dict)  # customer_uid -> id

    def cohort(self, cohort: Cohort) -> list[Member]:
        return [member for member in self.members if member.cohort == cohort]

    def ids_of(self, cohort: Cohort) -> list[int]:
        return [self.subscription_ids[m.customer_uid] for m in self.cohort(cohort)]

    def cohort_of(self) -> dict[int, Cohort]:
        """Subscription id -> cohort."""
        return {self.subscription_ids[m.customer_uid]: m.cohort for m in self.members}


def draw(
    rng: random.Random, count: int, month_start: datetime, weights: dict[str, int] = PLAN_WEIGHTS
) -> Population:
    plans = [plan for plan, weight in weights.items() for _ in range(weight)]
    return Population(
        [
            Member(f"chaos-{n:06d}", rng.choice(plans), _anchor(rng, month_start), _cohort(rng))
            for n in range(count)
        ]
    )


def _anchor(rng: random.Random, month_start: datetime) -> datetime:
    """A start in the month that begins at ``month_start`` (a 31-day month)."""
    day = rng.choice((28, 29, 30)) if rng.random() < MONTH_END_SHARE else rng.randrange(0, 28)
    seconds = rng.randrange(0, 86400)
    return month_start + timedelta(days=day, seconds=seconds)


def _cohort(rng: random.Random) -> Cohort:
    point = rng.random()
    for cohort, share in COHORT_SHARES:
        if point < share:
            return cohort
        point -= share
    return Cohort.GOOD


def batches(population: Population) -> Iterator[list[Member]]:
    for start in range(0, len(population.members), BATCH):
        yield population.members[start : start + BATCH]


def subscribe(session: Session, members: list[Member], now: datetime) -> dict[str, int]:
    """Create the customers and subscriptions of ``members``; customer_uid -> id."""
    ids = {}
    for member in members:
        add_customer(session, member.customer_uid, now, email=f"{member.customer_uid}@example.com")
        row = create_subscription(session, member.customer_uid, member.plan_id, member.start, now)
        ids[member.customer_uid] = row.id
    return ids
