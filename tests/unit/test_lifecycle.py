"""Subscription lifecycle transitions (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from billing.domain import lifecycle
from billing.domain.state import BillingState, Period
from billing.domain.statuses import SubscriptionStatus
from billing.domain.times import parse_time
from billing.errors import Conflict
from tests.unit.plans_factory import SEOUL, every, monthly


def at(text: str) -> datetime:
    return parse_time(text, SEOUL)


def paid_first_period(state: BillingState) -> BillingState:
    """What charging will do: the due period is paid, the next one becomes due."""
    nxt = Period(state.due.end, at("2026-03-01T09:00:00+09:00"), state.due.cycle + 1)
    return replace(state, current=state.due, due=nxt, period_no=2, next_charge_at=nxt.start)


def test_new_subscription_without_trial_is_due_at_start() -> None:
    state = lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00"))
    assert state.status == SubscriptionStatus.ACTIVE
    assert state.next_charge_at == at("2026-01-01T09:00:00+09:00")
    assert (state.period_no, state.attempt, state.current) == (1, 1, None)


def test_new_subscription_with_trial_is_trialing_until_the_first_charge() -> None:
    state = lifecycle.start(monthly(trial_days=7), at("2026-01-01T09:00:00+09:00"))
    assert state.status == SubscriptionStatus.TRIALING
    assert state.current == Period(
        at("2026-01-01T09:00:00+09:00"), at("2026-01-08T09:00:00+09:00"), -1
    )
    assert state.next_charge_at == at("2026-01-08T09:00:00+09:00")


def test_cancel_at_period_end_keeps_the_paid_period() -> None:
    state = paid_first_period(lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00")))
    canceled = lifecycle.cancel(state, at_period_end=True)
    assert canceled.status == SubscriptionStatus.ACTIVE and canceled.cancel_at_period_end


def test_cancel_at_period_end_with_nothing_paid_cancels_now() -> None:
    state = lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00"))
    canceled = lifecycle.cancel(state, at_period_end=True)
    assert canceled.status == SubscriptionStatus.CANCELED and canceled.next_charge_at is None


def test_canceled_is_final() -> None:
    state = lifecycle.cancel(lifecycle.start(monthly(), at("2026-01-01")), at_period_end=False)
    for change in (
        lambda s: lifecycle.pause(s),
        lambda s: lifecycle.cancel(s, False),
        lambda s: lifecycle.change_plan(s, every("1 year")),
        lambda s: lifecycle.resume(s, monthly(), at("2026-02-01")),
    ):
        with pytest.raises(Conflict):
            change(state)


def test_pause_stops_charges_and_resume_after_the_paid_period_reanchors_now() -> None:
    state = paid_first_period(lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00")))
    paused = lifecycle.pause(state)
    assert paused.next_charge_at is None and paused.status == SubscriptionStatus.PAUSED
    resumed = lifecycle.resume(paused, monthly(), at("2026-03-10T15:00:00+09:00"))
    assert resumed.status == SubscriptionStatus.ACTIVE
    assert resumed.next_charge_at == at("2026-03-10T15:00:00+09:00")
    assert resumed.due.end == at("2026-04-10T15:00:00+09:00")
    assert resumed.period_no == 2  # the skipped period was never begun: its number is reused


def test_resume_inside_the_paid_period_keeps_the_schedule() -> None:
    state = paid_first_period(lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00")))
    resumed = lifecycle.resume(lifecycle.pause(state), monthly(), at("2026-01-20T00:00:00+09:00"))
    assert resumed.next_charge_at == at("2026-02-01T09:00:00+09:00")
    assert resumed.due == state.due


def test_resume_after_a_begun_period_uses_a_new_period_number() -> None:
    state = lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00"))
    begun = replace(state, current=state.due, attempt=2, status=SubscriptionStatus.PAST_DUE)
    resumed = lifecycle.resume(lifecycle.pause(begun), monthly(), at("2026-01-05T00:00:00+09:00"))
    assert (resumed.period_no, resumed.attempt) == (2, 1)


def test_change_plan_before_the_due_period_begins_reschedules_it() -> None:
    state = paid_first_period(lifecycle.start(monthly(), at("2026-01-31T09:00:00+09:00")))
    changed = lifecycle.change_plan(state, every("1 year"))
    assert changed.plan_id == "p" and changed.next_plan_id is None
    assert changed.due.start == state.due.start
    assert changed.due.end == at("2027-02-28T09:00:00+09:00")


def test_change_plan_during_a_begun_period_waits_for_the_next() -> None:
    state = lifecycle.start(monthly(), at("2026-01-01T09:00:00+09:00"))
    begun = replace(state, current=state.due)
    changed = lifecycle.change_plan(begun, every("1 year"))
    assert (changed.plan_id, changed.next_plan_id) == ("monthly", "p")


def test_change_to_the_same_plan_is_refused() -> None:
    with pytest.raises(Conflict, match="already on plan"):
        lifecycle.change_plan(lifecycle.start(monthly(), at("2026-01-01")), monthly())
