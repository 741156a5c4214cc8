"""The billing calendar, as tables of cases a merchant would check by hand."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from billing.domain.calendar import period_amount, periods
from billing.domain.plans import Plan
from billing.domain.times import format_time, parse_time
from tests.unit.plans_factory import SEOUL, calendar, every, monthly


def charges(plan: Plan, start: str, count: int) -> list[tuple[str, int]]:
    begin = parse_time(start, plan.zone)
    return [
        (str(format_time(p.start, plan.zone)), period_amount(plan, p))
        for p in itertools.islice(periods(plan, begin), count)
    ]


def times(plan: Plan, start: str, count: int) -> list[str]:
    return [at for at, _ in charges(plan, start, count)]


def test_jan_31_anchor_clamps_each_month_and_returns_to_the_31st_for_14_months() -> None:
    assert times(monthly(), "2027-01-31T09:00:00+09:00", 14) == [
        "2027-01-31T09:00:00+09:00",
        "2027-02-28T09:00:00+09:00",
        "2027-03-31T09:00:00+09:00",
        "2027-04-30T09:00:00+09:00",
        "2027-05-31T09:00:00+09:00",
        "2027-06-30T09:00:00+09:00",
        "2027-07-31T09:00:00+09:00",
        "2027-08-31T09:00:00+09:00",
        "2027-09-30T09:00:00+09:00",
        "2027-10-31T09:00:00+09:00",
        "2027-11-30T09:00:00+09:00",
        "2027-12-31T09:00:00+09:00",
        "2028-01-31T09:00:00+09:00",
        "2028-02-29T09:00:00+09:00",  # leap year
    ]


def test_feb_29_yearly_falls_on_feb_28_and_back_on_29_in_leap_years() -> None:
    assert times(every("1 year"), "2028-02-29T10:00:00+09:00", 6) == [
        "2028-02-29T10:00:00+09:00",
        "2029-02-28T10:00:00+09:00",
        "2030-02-28T10:00:00+09:00",
        "2031-02-28T10:00:00+09:00",
        "2032-02-29T10:00:00+09:00",
        "2033-02-28T10:00:00+09:00",
    ]


def test_30th_quarterly_clamps_in_february_only() -> None:
    assert times(every("3 months"), "2026-11-30T12:00:00+09:00", 6) == [
        "2026-11-30T12:00:00+09:00",
        "2027-02-28T12:00:00+09:00",
        "2027-05-30T12:00:00+09:00",
        "2027-08-30T12:00:00+09:00",
        "2027-11-30T12:00:00+09:00",
        "2028-02-29T12:00:00+09:00",
    ]


def test_00_30_kst_is_the_previous_day_in_utc_but_bills_on_the_kst_date() -> None:
    plan = monthly()
    first, second, third = itertools.islice(
        periods(plan, parse_time("2026-03-31T00:30:00+09:00", SEOUL)), 3
    )
    assert first.start.isoformat() == "2026-03-30T15:30:00+00:00"
    # April has 30 days in Seoul: the 31st clamps to the 30th, which is the 29th in UTC.
    assert second.start.isoformat() == "2026-04-29T15:30:00+00:00"
    assert third.start.isoformat() == "2026-05-30T15:30:00+00:00"


def test_a_time_without_offset_is_read_in_the_plans_zone() -> None:
    assert parse_time("2026-03-31T00:30", SEOUL).isoformat() == "2026-03-30T15:30:00+00:00"
    assert parse_time("2026-03-31", SEOUL).isoformat() == "2026-03-30T15:00:00+00:00"


@pytest.mark.parametrize(
    ("interval", "start", "expected"),
    [
        (
            "1 day",
            "2026-02-27T23:00:00+09:00",
            ["2026-02-27T23:00:00+09:00", "2026-02-28T23:00:00+09:00", "2026-03-01T23:00:00+09:00"],
        ),
        (
            "2 weeks",
            "2026-12-25T08:00:00+09:00",
            ["2026-12-25T08:00:00+09:00", "2027-01-08T08:00:00+09:00", "2027-01-22T08:00:00+09:00"],
        ),
        (
            "1 month",
            "2026-08-31T00:00:00+09:00",
            ["2026-08-31T00:00:00+09:00", "2026-09-30T00:00:00+09:00", "2026-10-31T00:00:00+09:00"],
        ),
        (
            "6 months",
            "2026-08-31T00:00:00+09:00",
            ["2026-08-31T00:00:00+09:00", "2027-02-28T00:00:00+09:00", "2027-08-31T00:00:00+09:00"],
        ),
    ],
)
def test_anniversary_intervals(interval: str, start: str, expected: list[str]) -> None:
    assert times(every(interval), start, 3) == expected


def test_daily_plan_keeps_its_wall_clock_time_across_a_dst_change() -> None:
    new_york = ZoneInfo("America/New_York")
    plan = every("1 day", zone=new_york)
    assert times(plan, "2026-03-07T09:00:00-05:00", 3) == [
        "2026-03-07T09:00:00-05:00",
        "2026-03-08T09:00:00-04:00",
        "2026-03-09T09:00:00-04:00",
    ]


def test_trial_moves_the_first_charge_and_becomes_the_anchor() -> None:
    plan = monthly(trial_days=14)
    assert times(plan, "2026-01-17T10:00:00+09:00", 4) == [
        "2026-01-31T10:00:00+09:00",
        "2026-02-28T10:00:00+09:00",
        "2026-03-31T10:00:00+09:00",
        "2026-04-30T10:00:00+09:00",
    ]


def test_cron_with_proration_charges_the_rest_of_the_first_month_at_start() -> None:
    plan = calendar("0 10 1 * *", amount=55000)
    # 2026-01-16 10:00 to 2026-02-01 10:00 is 16 of January's 31 days.
    assert charges(plan, "2026-01-16T10:00:00+09:00", 3) == [
        ("2026-01-16T10:00:00+09:00", 55000 * 16 // 31),
        ("2026-02-01T10:00:00+09:00", 55000),
        ("2026-03-01T10:00:00+09:00", 55000),
    ]


def test_cron_proration_rounds_down_to_whole_won() -> None:
    plan = calendar("0 10 1 * *", amount=10000)
    (first_at, first_amount), _ = charges(plan, "2026-04-30T22:00:00+09:00", 2)
    # 12 hours of April's 30 days (720 hours): 10000 * 12 / 720 = 166.67 -> 166.
    assert (first_at, first_amount) == ("2026-04-30T22:00:00+09:00", 166)


def test_cron_start_on_a_fire_time_charges_the_full_amount_at_start() -> None:
    plan = calendar("0 10 1 * *", amount=55000)
    assert charges(plan, "2026-02-01T10:00:00+09:00", 2) == [
        ("2026-02-01T10:00:00+09:00", 55000),
        ("2026-03-01T10:00:00+09:00", 55000),
    ]


def test_cron_without_proration_waits_for_the_first_fire_time() -> None:
    plan = calendar("0 10 1 * *", prorate_first=False)
    assert charges(plan, "2026-01-16T10:00:00+09:00", 2) == [
        ("2026-02-01T10:00:00+09:00", 55000),
        ("2026-03-01T10:00:00+09:00", 55000),
    ]


def test_cron_proration_of_zero_won_is_skipped() -> None:
    plan = calendar("0 10 1 * *", amount=100)
    # One minute before the fire time is worth 100 * 1 / 44640 = 0 KRW: no charge for it.
    assert charges(plan, "2026-02-01T09:59:00+09:00", 2) == [
        ("2026-02-01T10:00:00+09:00", 100),
        ("2026-03-01T10:00:00+09:00", 100),
    ]


def test_cron_fires_in_the_plans_zone_not_in_utc() -> None:
    plan = calendar("30 0 1 * *", prorate_first=False)  # 00:30 on the 1st, Seoul
    first = next(periods(plan, parse_time("2026-05-15T00:00:00+09:00", SEOUL)))
    assert first.start.isoformat() == "2026-05-31T15:30:00+00:00"


def test_cron_with_trial_prorates_from_the_end_of_the_trial() -> None:
    plan = calendar("0 0 1 * *", amount=31000, trial_days=10)
    assert charges(plan, "2026-01-01T00:00:00+09:00", 2) == [
        ("2026-01-11T00:00:00+09:00", 21000),  # 21 of 31 days
        ("2026-02-01T00:00:00+09:00", 31000),
    ]


def test_huge_amounts_prorate_without_overflow_or_floats() -> None:
    plan = calendar("0 0 1 * *", amount=10**12)
    (_, amount), _ = charges(plan, "2026-01-16T00:00:00+09:00", 2)
    assert amount == 10**12 * 16 // 31
    assert isinstance(amount, int)


def test_periods_chain_without_gaps() -> None:
    for plan in (monthly(), every("1 year"), calendar("0 10 * * 1")):
        chain = list(
            itertools.islice(periods(plan, datetime.fromisoformat("2026-01-31T01:00:00+09:00")), 30)
        )
        assert all(a.end == b.start for a, b in itertools.pairwise(chain))
        assert all(p.start < p.end for p in chain)
