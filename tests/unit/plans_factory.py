"""Plans for unit tests, built the way the catalog builds them."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

from billing.domain.durations import parse_interval
from billing.domain.plans import Plan

SEOUL = ZoneInfo("Asia/Seoul")


def monthly(amount: int = 9900, **changes: object) -> Plan:
    return replace(
        Plan("monthly", "월간", amount, SEOUL, interval=parse_interval("1 month")), **changes
    )  # type: ignore[arg-type]


def every(interval: str, amount: int = 9900, **changes: object) -> Plan:
    return replace(Plan("p", "플랜", amount, SEOUL, interval=parse_interval(interval)), **changes)  # type: ignore[arg-type]


def calendar(cron: str, amount: int = 55000, **changes: object) -> Plan:
    return replace(Plan("cal", "팀", amount, SEOUL, cron=cron), **changes)  # type: ignore[arg-type]
