"""The scheduler: one pass claims due work, then sweeps open charges (``run_forever``: the
daemon of ``billing scheduler``).

Any number of schedulers may run at once: claims skip rows another one holds, the charge
identity is UNIQUE in the database, and every publish is repeated harmlessly if needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.engine import is_outage
from billing.errors import BrokerUnavailable
from billing.logs import log
from billing.services.aside import describe, set_aside
from billing.services.catalog_cache import CatalogCache
from billing.services.claims import (
    Claimed,
    Republished,
    claim_due,
    due_subscriptions,
    pending_to_republish,
    unknown_to_reconcile,
)
from billing.services.delivery import notices_to_deliver
from billing.services.jobs import LEDGER, LEDGER_EVERY, claim_job
from billing.services.notices import queue_reminders
from billing.services.ports import Publisher
from billing.services.refunds import refunds_to_reconcile

logger = logging.getLogger("billing.scheduler")
BATCH = 500


@dataclass
class Sweep:
    """What one sweep found, part by part."""

    pending: Republished = field(default_factory=Republished)
    unknown: list[int] = field(default_factory=list)
    refunds: list[int] = field(default_factory=list)
    notices: list[int] = field(default_factory=list)
    reminders: int = 0
    ledger: bool = False  # this scheduler claimed today's ledger reconciliation


@dataclass
class PassReport:
    claimed: int = 0
    canceled: int = 0
    skipped: int = 0
    set_aside: int = 0
    republished: int = 0
    reconciling: int = 0
    reminders: int = 0
    notices: int = 0
    refunds: int = 0

    @property
    def busy(self) -> bool:
        return bool(
            self.claimed or self.canceled or self.skipped or self.republished or self.reminders
        )


class Scheduler:
    def __init__(
        self,
        app: App,
        publisher: Publisher,
        plans: CatalogCache | None = None,
        batch: int = BATCH,
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.plans = plans or CatalogCache()
        self.batch = batch
        self.window = timedelta(seconds=app.settings.reconcile_after)

    def run_pass(self) -> PassReport:
        """Claim everything due at the billing clock's now, in batches, then sweep."""
        report = PassReport()
        now = self.app.clocks.billing.now()
        while True:
            claimed = self._claim(now)
            self.publisher.charge(claimed.charge_ids)
            self.publisher.reconcile(claimed.lookup_ids)
            report.claimed += len(claimed.charge_ids) + len(claimed.lookup_ids)
            report.canceled += claimed.canceled
            report.skipped += claimed.skipped
            report.set_aside += claimed.set_aside
            if claimed.examined < self.batch:
                break
        self._sweep(report, now)
        if report.busy or report.reconciling or report.notices or report.refunds:
            log(logger, "scheduler_pass", **vars(report))
        return report

    def _claim(self, now: datetime) -> Claimed:
        """One claim batch. A batch the database refuses for one row's sake (data no code
        expected) is claimed again row by row, and the row that fails alone is set aside:
        the oldest due row never poisons every pass (invariant 10)."""
        try:
            with self.app.transaction() as session:
                return claim_due(
                    session, now, self.app.clocks.system.now(), self.batch, self.plans, self.window
                )
        except SQLAlchemyError as exc:
            if is_outage(exc):
                raise
            log(logger, "claim_batch_failed", level=logging.WARNING, error=describe(exc))
        with self.app.transaction() as session:
            ids = [
                row.id
                for row in due_subscriptions(session, now, self.app.clocks.system.now(), self.batch)
            ]
        claimed = Claimed(examined=len(ids))
        for subscription_id in ids:
            one = self._claim_alone(now, subscription_id)
            claimed.charge_ids += one.charge_ids
            claimed.lookup_ids += one.lookup_ids
            claimed.canceled += one.canceled
            claimed.skipped += one.skipped
            claimed.set_aside += one.set_aside
        return claimed

    def _claim_alone(self, now: datetime, subscription_id: int) -> Claimed:
        try:
            with self.app.transaction() as session:
                return claim_due(
                    session,
                    now,
                    self.app.clocks.system.now(),
                    1,
                    self.plans,
                    self.window,
                    [subscription_id],
                )
        except SQLAlchemyError as exc:
            if is_outage(exc):
                raise
            with self.app.transaction() as session:
                set_aside(
                    session, subscription_id, describe(exc), now, self.app.clocks.system.now()
                )
            return Claimed(set_aside=1)

    def _sweep(self, report: PassReport, now: datetime) -> None:
        """Everything else that is due, in one transaction; published after its commit, so
        that no message names a row its reader cannot see yet. Each part runs in a savepoint:
        one that fails (data no code expected) is logged and the others go on."""
        wall = self.app.clocks.system.now()
        found = Sweep()
        with self.app.transaction() as session:
            for part in self._sweep_parts(session, now, wall, found):
                self._guarded(session, part)
        self.publisher.charge(found.pending.charge_ids)
        self.publisher.reconcile(found.pending.lookup_ids + found.unknown)
        self.publisher.refund(found.refunds)
        self.publisher.notify(found.notices)
        if found.ledger:
            self.publisher.reconcile_ledger()
        report.republished, report.reconciling = len(found.pending.charge_ids), len(found.unknown)
        report.reconciling += len(found.pending.lookup_ids)
        report.refunds, report.notices = len(found.refunds), len(found.notices)
        report.reminders = found.reminders

    def _sweep_parts(
        self, session: Session, now: datetime, wall: datetime, found: Sweep
    ) -> list[Callable[[], None]]:
        batch, window = self.batch, self.window

        def pending() -> None:
            found.pending = pending_to_republish(session, now, wall, window, batch, self.plans)

        def unknown() -> None:
            found.unknown = unknown_to_reconcile(session, now, wall, window, batch)

        def refunds() -> None:
            found.refunds = refunds_to_reconcile(session, wall, window, batch)

        def reminders() -> None:
            settings = self.plans.notice_settings(session)
            found.reminders = queue_reminders(session, settings, now, wall, batch)

        def notices() -> None:
            found.notices = notices_to_deliver(session, wall, batch * 4)

        def jobs() -> None:
            found.ledger = claim_job(session, LEDGER, wall, LEDGER_EVERY)

        return [pending, unknown, refunds, reminders, notices, jobs]

    def _guarded(self, session: Session, part: Callable[[], None]) -> None:
        try:
            with session.begin_nested():
                part()
        except Exception as exc:
            if is_outage(exc):
                raise
            log(
                logger,
                "scheduler_error",
                level=logging.ERROR,
                part=part.__name__,
                outage=False,
                error=describe(exc),
            )

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        """Pass after pass; a busy pass is followed at once by the next one."""
        log(logger, "scheduler_started", interval=interval)
        while not stop.is_set():
            try:
                busy = self.run_pass().busy
            except Exception as exc:  # the database or broker is down: log, wait, try again
                outage = is_outage(exc) or isinstance(exc, BrokerUnavailable)
                logger.exception(
                    "scheduler pass failed",
                    extra={"action": "scheduler_error", "fields": {"outage": outage}},
                )
                busy = False
            if not busy:
                stop.wait(interval)
        log(logger, "scheduler_stopped")
