"""Properties of the subscription lifecycle (billing/domain/lifecycle.py) under random
sequences of events, driven the way the services drive it: a charge is created only when the
subscription is due and has no open charge; a payment or a decline only counts for the
attempt it answers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain import dunning, lifecycle
from billing.domain.calendar import period_amount
from billing.domain.plans import Plan
from billing.domain.state import BillingState, Period
from billing.domain.statuses import CHARGEABLE_STATUSES, SubscriptionStatus
from billing.errors import Conflict
from tests.property.strategies import interval_plans, plans

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)

# Charging events come more often than lifecycle commands, as they do in production.
KINDS = (
    ["claim"] * 4
    + ["settle_open"] * 3
    + ["advance"] * 3
    + [
        "pay",
        "decline",
        "hard_decline",
        "cancel",
        "pause",
        "resume",
        "change_plan",
        "card_updated",
    ]
)
events = st.tuples(st.sampled_from(KINDS), st.integers(0, 24 * 40))


@dataclass
class Driver:
    """The services' rules around the pure transitions, with a ledger of charges."""

    plan: Plan
    other: Plan
    state: BillingState
    now: datetime = START
    charges: list[tuple[int, int]] = field(default_factory=list)  # (period_no, attempt)
    periods: dict[tuple[int, int], Period] = field(default_factory=dict)  # what each charges
    paid_periods: list[Period] = field(default_factory=list)  # credited to the subscription
    open: tuple[int, int] | None = None
    paid: list[int] = field(default_factory=list)  # period numbers, one per payment
    settled: set[tuple[int, int]] = field(default_factory=set)
    plans_by_id: dict[str, Plan] = field(default_factory=dict)

    def current_plan(self) -> Plan:
        return self.plans_by_id[self.state.plan_id]

    def claim(self) -> None:
        s = self.state
        due = s.next_charge_at is not None and s.next_charge_at <= self.now
        if s.status not in CHARGEABLE_STATUSES or not due or self.open is not None:
            return
        if s.cancel_at_period_end:
            self.state = lifecycle.cancel_at_renewal(s)
            return
        if period_amount(self.current_plan(), s.due) <= 0:
            self.state = lifecycle.skip_period(s, self.current_plan())
            return
        identity = (s.period_no, s.attempt)
        assert identity not in self.charges, f"charge identity {identity} derived twice"
        assert s.period_no not in self.paid, f"period {s.period_no} charged after it was paid"
        self.charges.append(identity)
        self.periods[identity] = s.due
        self.open = identity
        self.state = lifecycle.begin_period(s)

    def answer(self, identity: tuple[int, int], paid: bool, hard: bool = False) -> None:
        """PortOne's answer for one charge, as settle_paid / settle_failed apply it."""
        if identity in self.settled:
            return
        self.settled.add(identity)
        if self.open == identity:
            self.open = None
        s = self.state
        if paid:
            self.paid.append(identity[0])
            if s.period_no != identity[0]:
                return  # payment_for_superseded_period: see test_charging_properties.py
            self.paid_periods.append(self.periods[identity])
            nxt = self.plans_by_id[s.next_plan_id] if s.next_plan_id else None
            self.state = lifecycle.record_payment(s, self.current_plan(), nxt)
            return
        if (s.period_no, s.attempt) != identity:
            return
        policy = self.current_plan().dunning
        self.state = dunning.record_decline(s, policy, self.now, hard=hard).state

    def apply(self, kind: str, value: int) -> None:
        s = self.state
        try:
            if kind == "advance":
                self.now += timedelta(hours=1 + value)
            elif kind == "claim":
                self.claim()
            elif kind in ("pay", "decline", "hard_decline"):
                if self.charges:
                    target = self.charges[-1 - value % len(self.charges)]
                    self.answer(target, kind == "pay", kind == "hard_decline")
            elif kind == "settle_open" and self.open is not None:
                self.answer(self.open, value % 3 != 0)  # paid two times out of three
            elif kind == "cancel":
                self.state = lifecycle.cancel(s, value % 2 == 0)
            elif kind == "pause":
                self.state = lifecycle.pause(s)
            elif kind == "resume":
                plan_id = s.next_plan_id or s.plan_id
                self.state = lifecycle.resume(s, self.plans_by_id[plan_id], self.now)
            elif kind == "change_plan":
                new_plan = self.other if s.plan_id == self.plan.id else self.plan
                self.state = lifecycle.change_plan(s, new_plan)
            elif kind == "card_updated":
                self.state = lifecycle.card_updated(s, self.now)
        except Conflict:
            assert self.state == s  # a refused transition changes nothing


def check(before: BillingState, after: BillingState, driver: Driver) -> None:
    assert after.period_no >= before.period_no
    assert after.attempt >= 1 and after.period_no >= 1
    assert after.due.start < after.due.end
    if before.status == SubscriptionStatus.CANCELED:
        assert after.status == SubscriptionStatus.CANCELED, "canceled is final"
    if after.status in (SubscriptionStatus.PAUSED, SubscriptionStatus.CANCELED):
        assert after.next_charge_at is None
    if after.status in CHARGEABLE_STATUSES and driver.open is None:
        assert after.next_charge_at is not None, f"due work lost: {after}"
    assert len(driver.paid) == len(set(driver.paid)), f"a period paid twice: {driver.paid}"
    served = sorted(driver.paid_periods, key=lambda p: p.start)
    for a, b in itertools.pairwise(served):
        assert a.end <= b.start, f"the same days paid twice: {a} and {b}"


@settings(max_examples=400, deadline=None)
@given(plans, interval_plans(), st.lists(events, max_size=60))
def test_no_sequence_of_events_pays_a_period_twice_or_loses_due_work(
    plan: Plan, other: Plan, sequence: list[tuple[str, int]]
) -> None:
    other = Plan(
        "other",
        other.name,
        other.amount,
        other.zone,
        interval=other.interval,
        dunning=other.dunning,
    )
    driver = Driver(plan, other, lifecycle.start(plan, START))
    driver.plans_by_id = {plan.id: plan, other.id: other}
    for kind, value in sequence:
        before = driver.state
        driver.apply(kind, value)
        check(before, driver.state, driver)
