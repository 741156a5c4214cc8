"""The scheduler daemon: one pass claims due work, then sweeps open charges.

Any number of schedulers may run at once: claims skip rows another one holds, the charge
identity is UNIQUE in the database, and every publish is repeated harmlessly if needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing.bootstrap import App
from billing.logs import log
from billing.services.claims import claim_due, pending_to_republish, unknown_to_reconcile
from billing.services.delivery import notices_to_deliver
from billing.services.notices import queue_reminders
from billing.services.plan_cache import PlanCache
from billing.services.ports import Publisher
from billing.services.refunds import refunds_to_reconcile

logger = logging.getLogger("billing.scheduler")
BATCH = 500


@dataclass
class PassReport:
    claimed: int = 0
    canceled: int = 0
    skipped: int = 0
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
        plans: PlanCache | None = None,
        batch: int = BATCH,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.plans = plans or PlanCache()
        self.batch = batch
        self.wall = wall
        self.window = timedelta(seconds=app.settings.reconcile_after)

    def run_pass(self) -> PassReport:
        """Claim everything due at the billing clock's now, in batches, then sweep."""
        report = PassReport()
        now = self.app.clock.now()
        while True:
            with self.app.transaction() as session:
                claimed = claim_due(session, now, self.wall(), self.batch, self.plans)
            self.publisher.charge(claimed.charge_ids)
            report.claimed += len(claimed.charge_ids)
            report.canceled += claimed.canceled
            report.skipped += claimed.skipped
            if claimed.examined < self.batch:
                break
        self._sweep(report, now)
        if report.busy or report.reconciling or report.notices or report.refunds:
            log(logger, "scheduler_pass", **vars(report))
        return report

    def _sweep(self, report: PassReport, now: datetime) -> None:
        """Everything else that is due, in one transaction; published after its commit, so
        that no message names a row its reader cannot see yet."""
        wall = self.wall()
        with self.app.transaction() as session:
            pending = pending_to_republish(session, wall, self.window, self.batch)
            unknown = unknown_to_reconcile(session, now, wall, self.window, self.batch)
            refunds = refunds_to_reconcile(session, wall, self.window, self.batch)
            settings = self.plans.notice_settings(session)
            report.reminders = queue_reminders(session, settings, now, wall, self.batch)
            notices = notices_to_deliver(session, wall, self.batch * 4)
        self.publisher.charge(pending)
        self.publisher.reconcile(unknown)
        self.publisher.refund(refunds)
        self.publisher.notify(notices)
        report.republished, report.reconciling = len(pending), len(unknown)
        report.refunds, report.notices = len(refunds), len(notices)

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        """Pass after pass; a busy pass is followed at once by the next one."""
        log(logger, "scheduler_started", interval=interval)
        while not stop.is_set():
            try:
                busy = self.run_pass().busy
            except Exception:  # the database or broker is down: log, wait, try again
                logger.exception("scheduler pass failed", extra={"action": "scheduler_error"})
                busy = False
            if not busy:
                stop.wait(interval)
        log(logger, "scheduler_stopped")
