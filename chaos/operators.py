"""Operators at work while the queue is deep: cancel, pause, cancel at period end, change
plan and resume, at random moments of busy steps, on the subscriptions of the ``operated``
cohort, through the same services as the CLI and the HTTP API.

Every action that committed is logged with the system time after its commit, so that the
checks can tell whether anything was sent to PortOne for a subscription after it was
canceled or paused (invariant 8). Actions that a restore from a backup undid (committed
after the dump was taken) are dropped from the log when the restore happens.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError

from billing.app import App
from billing.db.tables import Charge, Subscription
from billing.errors import BillingError
from billing.services import subscriptions
from billing.services.claims import OPEN

ACTIONS = (("pause", 3), ("change_plan", 3), ("cancel_at_period_end", 2), ("cancel", 1))
PLANS = ("basic-monthly", "standard-monthly-trial", "team-calendar", "daily")


@dataclass(frozen=True)
class Act:
    """One operator action: at step ``step``, ``delay`` seconds after the clock moved."""

    step: int
    delay: float


@dataclass(frozen=True)
class Done:
    """An action that committed: what, on which subscription, and when (system clock)."""

    subscription_id: int
    action: str  # cancel | pause | cancel_at_period_end | change_plan | resume
    at: datetime
    served_until: datetime | None = None  # cancel at period end: the end of the paid period


@dataclass
class Operators:
    app: App
    rng: random.Random
    subscription_ids: Sequence[int]
    acts: list[Act] = field(default_factory=list)
    log: list[Done] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, load: Sequence[int], count: int) -> None:
        """``count`` actions, on busy steps by preference (they land while charges fly)."""
        busy = [i for i, n in enumerate(load) if n > 0] or list(range(len(load)))
        weights = [load[i] + 1 for i in busy]
        self.acts = sorted(
            (
                Act(self.rng.choices(busy, weights)[0], self.rng.uniform(0.0, 0.6))
                for _ in range(count)
            ),
            key=lambda act: (act.step, act.delay),
        )

    def at(self, step: int) -> list[Act]:
        return [act for act in self.acts if act.step == step]

    def act(self, act: Act, now: datetime) -> None:
        """Carry out ``act`` in the background, ``act.delay`` seconds from now."""
        thread = threading.Thread(target=self._act, args=(act, now), daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    def forget_after(self, moment: datetime) -> int:
        """A restore undid what committed after ``moment``: drop it from the log."""
        with self._lock:
            kept = [done for done in self.log if done.at <= moment]
            lost = len(self.log) - len(kept)
            self.log = kept
        self.counts["undone_by_restore"] += lost
        return lost

    def _act(self, act: Act, now: datetime) -> None:
        time.sleep(act.delay)
        with self._lock:
            which, what = self.rng.random(), self.rng.random()
        try:
            subscription_id = self._target(now, which)
            if subscription_id is None:
                self.counts["no_target"] += 1
                return
            done = self._carry_out(subscription_id, now, what)
        except BillingError:  # refused by the state (a charge in flight, already canceled)
            self.counts["refused"] += 1
            return
        except DBAPIError:  # PostgreSQL is down or restored right now
            self.counts["failed"] += 1
            return
        with self._lock:
            self.log.append(done)
        self.counts[done.action] += 1

    def _target(self, now: datetime, pick: float) -> int | None:
        """A live operated subscription that is due or has a charge in flight, if any."""
        in_flight = exists().where(
            Charge.subscription_id == Subscription.id, Charge.status.in_(OPEN)
        )
        with self.app.transaction() as session:
            rows = session.execute(
                select(Subscription.id, Subscription.next_charge_at, in_flight).where(
                    Subscription.id.in_(list(self.subscription_ids)),
                    Subscription.status != "canceled",
                )
            ).all()
        busy = [sid for sid, due, flying in rows if flying or (due is not None and due <= now)]
        pool = sorted(busy or [sid for sid, _, _ in rows])
        return pool[int(pick * len(pool))] if pool else None

    def _carry_out(self, subscription_id: int, now: datetime, pick: float) -> Done:
        wall = self.app.clocks.system.now()
        with self.app.transaction() as session:
            row = subscriptions.get_subscription(session, subscription_id)
            action = "resume" if row.status == "paused" else self._choose(pick)
            if action == "resume":
                row = subscriptions.resume(session, subscription_id, now)
            elif action == "pause":
                row = subscriptions.pause(session, subscription_id, now, wall)
            elif action == "change_plan":
                others = [plan for plan in PLANS if plan != row.plan_id]
                row = subscriptions.change_plan(
                    session, subscription_id, others[int(pick * 97) % 3], now
                )
            else:
                row = subscriptions.cancel(session, subscription_id, now, wall, action != "cancel")
            served = row.current_period_end if row.cancel_at_period_end else None
        if action == "cancel_at_period_end" and served is None:
            action = "cancel"  # asked after the period ended: a cancel now
        return Done(subscription_id, action, datetime.now(UTC), served)

    @staticmethod
    def _choose(pick: float) -> str:
        names = [name for name, weight in ACTIONS for _ in range(weight)]
        return names[int(pick * 1000) % len(names)]
