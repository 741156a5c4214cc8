"""``billing import portone-schedules``: customers taken over from PortOne's hosted scheduler.

One customer at a time, in three steps (``billing.domain.takeover``; decision record 24):
hold (a subscription that is not charged here, committed with a ``schedule_takeovers``
row), unschedule everything waiting at PortOne, release (read PortOne's schedules back and
start charging here from the first period PortOne will not charge). No transaction is open
while PortOne is called. A kill between any two steps leaves a state the next run finishes:
held customers are only ever charged by PortOne or by nobody, and are resumed, never
created twice. One run at a time (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.tables import Charge, ScheduleTakeover, Subscription
from billing.domain import lifecycle
from billing.domain.events import SchedulesTakenOver
from billing.domain.plans import Plan
from billing.domain.statuses import LIVE_STATUSES, SubscriptionStatus
from billing.domain.takeover import (
    HostedSchedule,
    Release,
    first_waiting_at,
    refusal,
    release,
    takeover_plan,
)
from billing.errors import Conflict, InvalidInput
from billing.portone.schedules import Caller, SchedulesUnreadable, schedules_of, unschedule_all
from billing.services.customers import CUSTOMER_UID, find_customer, save_customer
from billing.services.history import record_event
from billing.services.imports import csv_records
from billing.services.plan_store import current_plan
from billing.services.rows import store_state
from billing.services.subscriptions import insert_subscription

LOOK_BACK = timedelta(days=31)  # schedules read from this long before now (one late)...
LOOK_AHEAD = timedelta(days=2 * 366)  # ...to this long after (a yearly plan's next two)
RUN_LOCK = 0x62696C6C  # pg_advisory_lock key of one import run ("bill")
COLUMNS = ("customer_uid", "plan_id")
KILL_AFTER = "BILLING_IMPORT_KILL_AFTER"  # tests: held | unscheduled (SIGKILL there, once)


@dataclass(frozen=True)
class Wanted:
    """One line of the customers file."""

    customer_uid: str
    plan_id: str


@dataclass
class Outcome:
    """What became of one customer: ``taken_over`` (charged here from ``first_charge_at``),
    ``already`` (taken over by an earlier run), ``held`` (run again: PortOne did not answer
    or still holds waiting schedules) or ``refused`` (nothing was changed)."""

    customer_uid: str
    result: str
    detail: str = ""
    subscription_id: int | None = None
    first_charge_at: datetime | None = None
    revoked: tuple[str, ...] = ()
    fired: tuple[str, ...] = ()
    declined: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.result in ("taken_over", "already")


@dataclass
class Takeover:
    """The collaborators of one run."""

    app: App
    portone: Caller
    kill_after: str | None = field(default_factory=lambda: os.environ.get(KILL_AFTER))

    def run(self, wanted: list[Wanted]) -> list[Outcome]:
        with self._one_run():
            return [self._customer(item) for item in wanted]

    # -- one customer ------------------------------------------------------------------------

    def _customer(self, wanted: Wanted) -> Outcome:
        try:
            with self.app.transaction() as session:
                row = session.get(ScheduleTakeover, wanted.customer_uid)
                known = None if row is None else (row.state, row.subscription_id, row.held)
            if known is None:
                held = self._hold(wanted)
                if isinstance(held, Outcome):
                    return held
                subscription_id, waiting = held
            elif known[0] == "released":
                return Outcome(wanted.customer_uid, "already", subscription_id=known[1])
            else:
                subscription_id, waiting = known[1], frozenset(known[2])
            return self._unschedule_and_release(wanted, subscription_id, waiting)
        except SchedulesUnreadable as exc:  # held if it got that far, else nothing changed
            return Outcome(
                wanted.customer_uid, "held" if self._is_held(wanted) else "refused", str(exc)
            )

    def _hold(self, wanted: Wanted) -> Outcome | tuple[int, frozenset[str]]:
        """Step 1: read PortOne's schedules; create the held subscription (or refuse)."""
        schedules = self._schedules(wanted.customer_uid)
        now = self.app.clocks.billing.now()  # read before the transaction (SQLite)
        with self.app.transaction() as session:
            plan = current_plan(session, wanted.plan_id, lock=True)
            reason = refusal(schedules, plan) or _already_billed_here(session, wanted)
            if reason is not None:
                return Outcome(wanted.customer_uid, "refused", reason)
            subscription_id = _create_held(session, wanted, plan, schedules, now)
            waiting = frozenset(item.merchant_uid for item in schedules if item.waiting)
            session.add(
                ScheduleTakeover(
                    customer_uid=wanted.customer_uid,
                    subscription_id=subscription_id,
                    state="held",
                    held=sorted(waiting),
                    held_at=self.app.clocks.system.now(),
                )
            )
        self._maybe_die("held")
        return subscription_id, waiting

    def _unschedule_and_release(
        self, wanted: Wanted, subscription_id: int, waiting: frozenset[str]
    ) -> Outcome:
        """Steps 2 and 3."""
        unschedule_all(self.portone, wanted.customer_uid)
        self._maybe_die("unscheduled")
        with self.app.transaction() as session:
            plan = current_plan(session, _plan_of(session, subscription_id))
        decision = release(waiting, self._schedules(wanted.customer_uid), plan)
        if not isinstance(decision, Release):
            waiting_now = ", ".join(decision.merchant_uids)
            return Outcome(
                wanted.customer_uid,
                "held",
                f"still waiting at PortOne: {waiting_now}",
                subscription_id,
            )
        now, wall = self.app.clocks.billing.now(), self.app.clocks.system.now()
        with self.app.transaction() as session:
            return _release(session, wanted.customer_uid, decision, now, wall)

    # -- plumbing ----------------------------------------------------------------------------

    def _schedules(self, customer_uid: str) -> list[HostedSchedule]:
        now = self.app.clocks.system.now()  # PortOne's clock
        since, until = int((now - LOOK_BACK).timestamp()), int((now + LOOK_AHEAD).timestamp())
        return schedules_of(self.portone, customer_uid, since, until)

    def _is_held(self, wanted: Wanted) -> bool:
        with self.app.transaction() as session:
            return session.get(ScheduleTakeover, wanted.customer_uid) is not None

    def _maybe_die(self, step: str) -> None:
        """The test seam of the kill tests: die here, as a SIGKILL would (no cleanup)."""
        if self.kill_after == step:
            os.kill(os.getpid(), signal.SIGKILL)

    @contextmanager
    def _one_run(self) -> Iterator[None]:
        """A transaction-level advisory lock held on a connection of its own for the whole
        run (a session-level one would not survive PgBouncer's transaction mode)."""
        if self.app.engine.dialect.name != "postgresql":
            yield  # SQLite: one writer at a time anyway
            return
        with self.app.engine.connect() as connection, connection.begin():
            query = text("SELECT pg_try_advisory_xact_lock(:k)")
            if not connection.scalar(query, {"k": RUN_LOCK}):
                raise Conflict("another `billing import portone-schedules` is running; wait for it")
            yield


def _already_billed_here(session: Session, wanted: Wanted) -> str | None:
    """A customer with a live subscription here would be charged by both: refused."""
    customer = find_customer(session, wanted.customer_uid)
    if customer is None:
        return None
    live = session.scalar(
        select(Subscription.id).where(
            Subscription.customer_id == customer.id,
            Subscription.status.in_([str(status) for status in LIVE_STATUSES]),
        )
    )
    if live is None:
        return None
    return (
        f"the customer already has live subscription {live} here: taking PortOne's schedules "
        "over as well would charge twice (cancel one of them first)"
    )


def _create_held(
    session: Session, wanted: Wanted, plan: Plan, schedules: list[HostedSchedule], now: datetime
) -> int:
    """The subscription, starting at PortOne's first waiting schedule, not charged here."""
    if find_customer(session, wanted.customer_uid) is None:
        save_customer(session, wanted.customer_uid, now)
    customer = find_customer(session, wanted.customer_uid)
    assert customer is not None
    start = first_waiting_at(schedules)
    state = replace(lifecycle.start(takeover_plan(plan), start), next_charge_at=None)
    return insert_subscription(session, customer, plan, start, state, now, imported=True).id


def _plan_of(session: Session, subscription_id: int) -> str:
    plan_id = session.scalar(select(Subscription.plan_id).where(Subscription.id == subscription_id))
    assert plan_id is not None
    return plan_id


def _release(
    session: Session, customer_uid: str, decision: Release, now: datetime, wall: datetime
) -> Outcome:
    """Step 3: charge the held subscription here from the decided period (locked rows)."""
    query = select(ScheduleTakeover).where(ScheduleTakeover.customer_uid == customer_uid)
    takeover = session.scalar(query.with_for_update())
    assert takeover is not None
    sub = session.scalar(
        select(Subscription).where(Subscription.id == takeover.subscription_id).with_for_update()
    )
    assert sub is not None
    first = _start_charging(session, sub, decision.first_charge_at, now)
    takeover.state, takeover.released_at, takeover.first_charge_at = "released", wall, first
    record_event(
        session,
        SchedulesTakenOver(
            revoked=decision.revoked,
            fired=decision.fired,
            declined=decision.declined,
            first_charge_at=first.isoformat() if first else None,
            status=sub.status,
        ),
        now,
        subscription_id=sub.id,
    )
    detail = "" if first else f"not charged here: the subscription is {sub.status}"
    return Outcome(
        customer_uid,
        "taken_over",
        detail,
        sub.id,
        first,
        decision.revoked,
        decision.fired,
        decision.declined,
    )


def _start_charging(
    session: Session, sub: Subscription, first: datetime, now: datetime
) -> datetime | None:
    """Due from ``first`` on, unless a person acted on the held subscription meanwhile (it
    was canceled or paused: that stands) or it somehow has charges (left alone)."""
    charged = session.scalar(select(Charge.id).where(Charge.subscription_id == sub.id).limit(1))
    if sub.status != SubscriptionStatus.ACTIVE or sub.next_charge_at is not None or charged:
        return None
    plan = current_plan(session, sub.plan_id)
    store_state(sub, lifecycle.start(takeover_plan(plan), first))
    sub.started_at, sub.plan_version, sub.updated_at = first, plan.version, now
    return sub.next_charge_at


MAX_CUSTOMERS = 100_000  # a larger move is split into several files


def read_customers(path: Path, plans: set[str]) -> list[Wanted]:
    """The customers file: CSV with the header ``customer_uid,plan_id``, or JSON lines with
    those two fields. Every line is checked before anything is done; InvalidInput names the
    first bad one."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: cannot read: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    records = (
        _json_lines(content, path)
        if content.lstrip().startswith("{")
        else csv_records(iter(io.StringIO(content, newline="")), path, _check_header)
    )
    wanted: dict[str, Wanted] = {}
    for line, record in records:
        item = _wanted(record, plans, f"{path}: line {line}")
        if item.customer_uid in wanted:
            raise InvalidInput(f"{path}: line {line}: customer_uid {item.customer_uid} twice")
        wanted[item.customer_uid] = item
        if len(wanted) > MAX_CUSTOMERS:
            raise InvalidInput(f"{path}: more than {MAX_CUSTOMERS} customers: split the file")
    if not wanted:
        raise InvalidInput(f"{path}: no customers in the file")
    return list(wanted.values())


def _check_header(header: list[str], path: Path) -> None:
    if sorted(header) != sorted(COLUMNS):
        raise InvalidInput(f"{path}: line 1: the header must be {','.join(COLUMNS)}")


def _json_lines(content: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict) or sorted(record) != sorted(COLUMNS):
            raise InvalidInput(
                f"{path}: line {number}: not a JSON object with exactly {', '.join(COLUMNS)}"
            )
        yield number, record


def _wanted(record: dict[str, Any], plans: set[str], where: str) -> Wanted:
    uid, plan_id = record.get("customer_uid"), record.get("plan_id")
    if not isinstance(uid, str) or not CUSTOMER_UID.match(uid.strip()):
        raise InvalidInput(
            f"{where}: customer_uid {str(uid)[:80]!r} must be 1-80 characters "
            "of letters, digits and _ . : @ + = -"
        )
    if not isinstance(plan_id, str) or plan_id.strip() not in plans:
        known = ", ".join(sorted(plans)) or "none loaded"
        raise InvalidInput(f"{where}: unknown plan {str(plan_id)[:64]!r} (plans: {known})")
    return Wanted(uid.strip(), plan_id.strip())
