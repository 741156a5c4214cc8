"""Hypothesis strategies for plans, times and zones, shared by the property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from billing.domain.dunning import DunningPolicy, FinalAction
from billing.domain.durations import Interval, Unit
from billing.domain.plans import Plan

# Seoul (no DST since 1988), UTC, and zones whose DST gaps and folds move wall clocks: New York
# and London (1 h at 02:00/01:00), Lord Howe (30 min), Santiago (at midnight), Chatham (+12:45).
ZONES = [
    ZoneInfo(name)
    for name in (
        "Asia/Seoul",
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Pacific/Chatham",
    )
]
CRONS = [
    "0 10 1 * *",
    "0 0 1 * *",
    "30 9 15 * *",
    "0 0 * * 1",
    "0 12 * * *",
    "15 3 28 * *",
    "0 0 1 1 *",
    "0 9 1,15 * *",
    "0 2 * * 0",
    "0 0 31 * *",
]

zones = st.sampled_from(ZONES)
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
amounts = st.integers(min_value=1, max_value=10**12)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    unit = draw(st.sampled_from(list(Unit)))
    return Interval(draw(st.integers(1, 24 if unit == Unit.MONTH else 5)), unit)


@st.composite
def crons(draw: st.DrawFn) -> str:
    """Shipped-looking expressions, and generated ones that fire at least monthly."""
    if draw(st.booleans()):
        return draw(st.sampled_from(CRONS))
    minute, hour = draw(st.integers(0, 59)), draw(st.integers(0, 23))
    day = draw(st.sampled_from(["*", "1", "15", "28", "1,15", "*/7"]))
    weekday = "*" if day != "*" else draw(st.sampled_from(["*", "1", "1-5", "0,6"]))
    return f"{minute} {hour} {day} * {weekday}"


dunning = st.builds(
    DunningPolicy,
    st.lists(st.integers(1, 40), min_size=0, max_size=4, unique=True).map(
        lambda days: tuple(timedelta(days=d) for d in sorted(days))
    ),
    st.sampled_from(list(FinalAction)),
)


@st.composite
def interval_plans(draw: st.DrawFn) -> Plan:
    return Plan(
        "p",
        "플랜",
        draw(amounts),
        draw(zones),
        interval=draw(intervals()),
        trial_days=draw(st.sampled_from([0, 0, 1, 7, 14, 30])),
        dunning=draw(dunning),
    )


@st.composite
def cron_plans(draw: st.DrawFn) -> Plan:
    return Plan(
        "c",
        "팀",
        draw(amounts),
        draw(zones),
        cron=draw(crons()),
        trial_days=draw(st.sampled_from([0, 0, 3, 14])),
        prorate_first=draw(st.booleans()),
        dunning=draw(dunning),
    )


plans = st.one_of(interval_plans(), cron_plans())
