"""Properties of the billing calendar (billing/domain/calendar.py) over random plans, zones
and start times: periods tile time, anniversaries come back to the anchor day, prorated
amounts are whole KRW within the price, calendar periods start on fire times."""

from __future__ import annotations

import calendar as stdlib_calendar
import itertools
from datetime import date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.calendar import (
    Period,
    add_days,
    first_period,
    is_fire_time,
    next_fire,
    period_amount,
    periods,
    shift,
)
from billing.domain.plans import Plan
from tests.property.strategies import cron_plans, interval_plans, moments, plans

COUNT = 30  # periods looked at per example (two and a half years of a monthly plan)


def first(plan: Plan, start: datetime, count: int = COUNT) -> list[Period]:
    return list(itertools.islice(periods(plan, start), count))


@settings(max_examples=100, deadline=None)
@given(plans, moments)
def test_periods_never_overlap_nor_leave_gaps(plan: Plan, start: datetime) -> None:
    tiles = first(plan, start)
    assert all(p.start < p.end for p in tiles)
    assert all(a.end == b.start for a, b in itertools.pairwise(tiles))
    assert tiles[0].start >= start
    assert all(p.start.utcoffset() is not None for p in tiles)  # aware, always


@settings(max_examples=100, deadline=None)
@given(interval_plans(), moments)
def test_the_first_period_starts_when_the_trial_ends(plan: Plan, start: datetime) -> None:
    expected = add_days(start, plan.trial_days, plan.zone) if plan.trial_days else start
    assert first_period(plan, start).start == expected


def expected_anniversary(anchor_local: datetime, months: int) -> date:
    """Computed without the code under test: the anchor's day, clamped to the month's length."""
    year, month0 = divmod(anchor_local.month - 1 + months, 12)
    year, month = anchor_local.year + year, month0 + 1
    return date(year, month, min(anchor_local.day, stdlib_calendar.monthrange(year, month)[1]))


@settings(max_examples=100, deadline=None)
@given(interval_plans(), moments, st.integers(0, 60))
def test_anniversaries_clamp_to_the_month_end_and_return_to_the_anchor_day(
    plan: Plan, start: datetime, k: int
) -> None:
    assert plan.interval is not None
    anchor = first_period(plan, start).start
    boundary = shift(anchor, plan.interval, k, plan.zone).astimezone(plan.zone)
    anchor_local = anchor.astimezone(plan.zone)
    if plan.interval.months:
        assert boundary.date() == expected_anniversary(anchor_local, k * plan.interval.months)
    else:
        days = k * plan.interval.days
        assert boundary.date() == date.fromordinal(anchor_local.toordinal() + days)


@settings(max_examples=100, deadline=None)
@given(interval_plans(), moments)
def test_each_anniversary_period_is_the_kth_boundary_from_the_anchor(
    plan: Plan, start: datetime
) -> None:
    assert plan.interval is not None
    tiles = first(plan, start, 14)
    anchor = tiles[0].start
    for k, period in enumerate(tiles):
        assert period.start == shift(anchor, plan.interval, k, plan.zone)
        assert period_amount(plan, period) == plan.amount


@settings(max_examples=100, deadline=None)
@given(cron_plans(), moments)
def test_prorated_amounts_are_whole_krw_within_the_price(plan: Plan, start: datetime) -> None:
    for period in first(plan, start, 6):
        amount = period_amount(plan, period)
        assert type(amount) is int
        assert 0 <= amount <= plan.amount


@settings(max_examples=100, deadline=None)
@given(cron_plans(), moments, st.integers(0, 10**6))
def test_a_partial_period_costs_the_floor_of_its_share(
    plan: Plan, start: datetime, seconds: int
) -> None:
    """Any [t, next fire) costs floor(amount * (next - t) / (next - previous)), never more."""
    assert plan.cron is not None
    previous = next_fire(plan.cron, start, plan.zone)
    following = next_fire(plan.cron, previous, plan.zone)
    span = following - previous
    moment = previous + (span * min(seconds, 10**6 - 1)) / 10**6
    moment = moment.replace(microsecond=0)
    amount = period_amount(plan, Period(moment, following))
    assert 0 <= amount <= plan.amount
    if moment == previous:
        assert amount == plan.amount
    else:
        share = (following - moment) / span
        assert amount <= plan.amount * share + 1e-6 * plan.amount + 1


@settings(max_examples=100, deadline=None)
@given(cron_plans(), moments)
def test_cron_periods_start_on_fire_times_except_a_prorated_first_one(
    plan: Plan, start: datetime
) -> None:
    assert plan.cron is not None
    tiles = first(plan, start, 8)
    for period in tiles[1:]:
        assert is_fire_time(plan.cron, period.start, plan.zone)
        assert period_amount(plan, period) == plan.amount
    head = tiles[0]
    assert is_fire_time(plan.cron, head.end, plan.zone)
    if not is_fire_time(plan.cron, head.start, plan.zone):
        assert plan.prorate_first
        assert 0 < period_amount(plan, head) <= plan.amount
