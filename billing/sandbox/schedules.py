"""The sandbox's book of hosted schedules (PortOne's ``subscribe/payments/schedule``): what is
to be charged when, what was revoked, and the outcome of what was executed.

Schedules are frozen values, one per merchant_uid (a merchant_uid is never scheduled twice);
the due ones come out of a heap oldest first. ``lock`` (re-entrant) guards every change, and
the firing of the due schedules holds it from taking them to recording their outcome, so a
schedule is never fired twice and never revoked while it is being charged.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from billing.sandbox.ledger import ChargeOrder


class ScheduleStatus(StrEnum):
    SCHEDULED = "scheduled"
    EXECUTED = "executed"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One scheduled charge of a billing key and, once executed, its payment's outcome."""

    seq: int
    order: ChargeOrder
    schedule_at: int
    status: ScheduleStatus = ScheduleStatus.SCHEDULED
    executed_at: int = 0
    revoked_at: int = 0
    imp_uid: str | None = None
    payment_status: str | None = None
    fail_reason: str | None = None

    @property
    def merchant_uid(self) -> str:
        return self.order.merchant_uid

    @property
    def customer_uid(self) -> str:
        return self.order.customer_uid


@dataclass(frozen=True, slots=True)
class Outcome:
    """What executing a schedule did: the payment (if one was recorded) and its status."""

    payment_status: str
    imp_uid: str | None = None
    fail_reason: str | None = None


class DuplicateSchedule(Exception):
    """The merchant_uid is scheduled already (or twice in one request); nothing was added."""

    def __init__(self, merchant_uid: str) -> None:
        super().__init__(merchant_uid)
        self.merchant_uid = merchant_uid


class ScheduleBook:
    """Owns every schedule; thread-safe through ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._schedules: dict[str, Schedule] = {}
        self._due: list[tuple[int, int, str]] = []  # (schedule_at, seq, merchant_uid)

    def add(self, entries: Sequence[tuple[ChargeOrder, int]]) -> list[Schedule]:
        """Schedule every (order, schedule_at), or none of them (DuplicateSchedule)."""
        with self.lock:
            seen: set[str] = set()
            for order, _ in entries:
                if order.merchant_uid in self._schedules or order.merchant_uid in seen:
                    raise DuplicateSchedule(order.merchant_uid)
                seen.add(order.merchant_uid)
            return [self._add(order, at) for order, at in entries]

    def _add(self, order: ChargeOrder, schedule_at: int) -> Schedule:
        schedule = Schedule(len(self._schedules), order, schedule_at)
        self._schedules[order.merchant_uid] = schedule
        heapq.heappush(self._due, (schedule_at, schedule.seq, order.merchant_uid))
        return schedule

    def get(self, merchant_uid: str) -> Schedule | None:
        with self.lock:
            return self._schedules.get(merchant_uid)

    def next_due_at(self) -> int | None:
        """The earliest schedule_at still in the heap (a cheap look, without the lock)."""
        try:
            return self._due[0][0]
        except IndexError:  # empty (or emptied by another thread meanwhile)
            return None

    def take_due(self, now: int) -> list[Schedule]:
        """The ``scheduled`` schedules with schedule_at <= now, oldest first, out of the heap."""
        with self.lock:
            taken: list[Schedule] = []
            while self._due and self._due[0][0] <= now:
                _, _, merchant_uid = heapq.heappop(self._due)
                schedule = self._schedules[merchant_uid]
                if schedule.status is ScheduleStatus.SCHEDULED:
                    taken.append(schedule)
            return taken

    def execute(self, merchant_uid: str, outcome: Outcome, now: int) -> Schedule:
        """Record the outcome of a schedule taken by ``take_due``."""
        with self.lock:
            executed = replace(
                self._schedules[merchant_uid],
                status=ScheduleStatus.EXECUTED,
                executed_at=now,
                imp_uid=outcome.imp_uid,
                payment_status=outcome.payment_status,
                fail_reason=outcome.fail_reason,
            )
            self._schedules[merchant_uid] = executed
            return executed

    def revoke(
        self, customer_uid: str | None, merchant_uids: Iterable[str], now: int
    ) -> list[Schedule]:
        """Revoke the ``scheduled`` ones among ``merchant_uids`` (all of the customer's when
        none is given), restricted to ``customer_uid`` when given; answers the revoked."""
        wanted = list(merchant_uids)
        with self.lock:
            if wanted:
                chosen = [self._schedules[m] for m in wanted if m in self._schedules]
            else:  # all of the customer's (and nobody's when no customer is named either)
                chosen = list(self._schedules.values()) if customer_uid else []
            revoked = [
                replace(schedule, status=ScheduleStatus.REVOKED, revoked_at=now)
                for schedule in chosen
                if schedule.status is ScheduleStatus.SCHEDULED
                and customer_uid in (None, schedule.customer_uid)
            ]
            for schedule in revoked:
                self._schedules[schedule.merchant_uid] = schedule
            return revoked

    def between(
        self,
        since: int,
        until: int,
        status: ScheduleStatus | None = None,
        customer_uid: str | None = None,
    ) -> list[Schedule]:
        """Schedules with since <= schedule_at < until, of that status and customer if given,
        in creation order."""
        with self.lock:
            return [
                schedule
                for schedule in self._schedules.values()
                if since <= schedule.schedule_at < until
                and status in (None, schedule.status)
                and customer_uid in (None, schedule.customer_uid)
            ]

    def clear(self) -> None:
        with self.lock:
            self._schedules.clear()
            self._due.clear()
