"""The chaos run's own checks, on top of ``billing.invariants.check``.

The sandbox declines at random (a fault), so a good card may be declined too; but it is never
declined on purpose. Once the faults are off and the dunning retries have had time to run,
every period the calendar says is due must be paid, exactly once, at the calendar's amount.
The one excuse: dunning ran out because the sandbox really declined every attempt of a period
(how many attempts that takes depends on when each decline was learned: retry times that have
passed are not made up, see ``billing.domain.lifecycle.record_decline``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Subscription
from billing.domain.calendar import period_amount, periods
from billing.domain.plans import Catalog, Plan
from billing.domain.state import Period
from billing.invariants import Anomaly
from chaos.operators import Done
from chaos.population import Cohort

DAILY_CRON = re.compile(r"^\d+ \d+ \* \* \*$")  # minute hour, every day

KINDS = (
    "good_card_period_unpaid",  # a due period of a card never declined on purpose is not paid
    "paid_not_on_calendar",  # a paid charge whose period or amount is not the calendar's
    "paid_before_due",  # a period paid before the clock reached its start
    "paid_days_overlap",  # two paid charges of one subscription cover the same days
    "charged_after_cancel_or_pause",  # sent to PortOne after an operator stopped it, and paid
    "portone_polled_too_often",  # more lookups for one charge than the ceiling
    "scheduler_pass_failed",  # a scheduler pass (or part of one) failed, not for an outage
    "subscription_set_aside",  # the product met data it did not expect (invariant 10)
    "calendar_day_charged_twice",  # a daily cron plan paid twice on one local date (DST)
    "calendar_day_skipped",  # a daily cron plan not paid on a local date it was due (DST)
)
LOOKUP_CEILING = 25  # lookups of one charge; each unknown outcome takes a handful


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
    declined = {str(p.get("merchant_uid")) for p in ledger if _no_money(p)}
    charges: dict[int, list[Charge]] = defaultdict(list)
    for charge in session.scalars(select(Charge).order_by(Charge.id)):
        charges[charge.subscription_id].append(charge)
    anomalies: list[Anomaly] = []
    tally = Tally()
    for sub in session.scalars(select(Subscription).order_by(Subscription.id)):
        plan = catalog.plan(sub.plan_id)
        assert plan is not None, sub.plan_id
        mine = charges[sub.id]
        anomalies += _overlaps(sub, mine)
        anomalies += _polled(mine)
        if sub.set_aside_reason is not None:
            detail = f"subscription {sub.id}: {sub.set_aside_reason}"
            anomalies.append(Anomaly("subscription_set_aside", detail))
        if cohorts.get(sub.id) == Cohort.OPERATED:
            continue  # its calendar and plan were changed by operators: checked by stopped()
        anomalies += _daily_dates(sub, plan, mine)
        due = list(itertools.takewhile(lambda p: p.start <= now, periods(plan, sub.started_at)))
        anomalies += _on_calendar(sub, plan, due, mine)
        if cohorts.get(sub.id) == Cohort.GOOD:
            anomalies += _all_paid(sub, plan, due, mine, declined, tally)
    return anomalies, tally


def _no_money(payment: Mapping[str, Any]) -> bool:
    """An attempt the gateway itself refused: declined, net-cancelled by the PG, left ready."""
    status, paid_at = payment.get("status"), payment.get("paid_at")
    return status in ("failed", "ready") or (status == "cancelled" and not paid_at)


def stopped(session: Session, log: Iterable[Done]) -> list[Anomaly]:
    """Nothing sent after a cancel or pause (until a resume), nor a renewal after a cancel
    at period end, was paid (invariant 8). ``sent_at`` is stamped when a send is taken, in
    the transaction that the operator's action serializes with."""
    stops: dict[int, list[tuple[datetime, datetime | None, datetime | None, str]]] = {}
    for done in sorted(log, key=lambda d: d.at):
        mine = stops.setdefault(done.subscription_id, [])
        if done.action == "resume" and mine and mine[-1][1] is None:
            mine[-1] = (mine[-1][0], done.at, mine[-1][2], mine[-1][3])
        elif done.action in ("cancel", "pause", "cancel_at_period_end"):
            mine.append((done.at, None, done.served_until, done.action))
    anomalies = []
    paid = select(Charge).where(Charge.status == "paid", Charge.subscription_id.in_(list(stops)))
    for charge in session.scalars(paid.order_by(Charge.id)):
        for begin, end, served_until, action in stops[charge.subscription_id]:
            sent = charge.sent_at
            after = sent is not None and sent > begin and (end is None or sent < end)
            renewal = served_until is None or charge.period_start >= served_until
            if after and renewal:
                detail = (
                    f"{charge.merchant_uid} sent {sent} after {action} at {begin}"
                    f"{f', resumed {end}' if end else ''}"
                )
                anomalies.append(Anomaly("charged_after_cancel_or_pause", detail))
    return anomalies


def scheduler_failures(log_texts: Iterable[str]) -> list[Anomaly]:
    """Scheduler passes that failed for another reason than an unreachable store."""
    anomalies = []
    for text in log_texts:
        for line in text.splitlines():
            if '"scheduler_error"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("action") == "scheduler_error" and entry.get("outage") is False:
                reason = str(entry.get("error") or entry.get("exception", ""))[-200:]
                anomalies.append(Anomaly("scheduler_pass_failed", reason))
    return anomalies


def _polled(charges: list[Charge]) -> list[Anomaly]:
    return [
        Anomaly("portone_polled_too_often", f"{c.merchant_uid}: {c.lookups} lookups")
        for c in charges
        if c.lookups > LOOKUP_CEILING
    ]


def _daily_dates(sub: Subscription, plan: Plan, charges: list[Charge]) -> list[Anomaly]:
    """A cron plan that fires once a day is paid once per local date, on consecutive dates
    (daylight saving neither repeats nor skips a day). Read independently of the calendar
    code under test: local dates in the plan's zone."""
    if plan.cron is None or not DAILY_CRON.match(plan.cron):
        return []
    dates = [c.period_start.astimezone(plan.zone).date() for c in charges if c.status == "paid"]
    twice = sorted({day for day in dates if dates.count(day) > 1})
    anomalies = [
        Anomaly("calendar_day_charged_twice", f"subscription {sub.id} on {day}") for day in twice
    ]
    ordered = sorted(set(dates))
    for earlier, later in itertools.pairwise(ordered):
        if (later - earlier).days > 1:
            detail = f"subscription {sub.id}: paid {earlier}, then {later}"
            anomalies.append(Anomaly("calendar_day_skipped", detail))
    return anomalies


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
    detail = (
        f"subscription {sub.id} ({sub.status}, plan {sub.plan_id}): periods {missing} of "
        f"{len(due)} due are not paid"
    )
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
