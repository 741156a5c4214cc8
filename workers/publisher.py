"""Publishing tasks by name, so the scheduler needs none of the worker's code."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from workers.config import MAX_COUNTDOWN

CHARGE = "billing.charge"
RECONCILE = "billing.reconcile"
NOTIFY = "billing.notify"
REFUND = "billing.refund"


class CeleryPublisher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self._send(CHARGE, charge_ids, countdown)

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self._send(RECONCILE, charge_ids, countdown)

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None:
        self._send(REFUND, refund_ids, countdown)

    def notify(self, notice_ids: Sequence[int]) -> None:
        self._send(NOTIFY, notice_ids, None)

    def _send(self, name: str, ids: Sequence[int], countdown: float | None) -> None:
        if not ids:
            return
        delay = None if countdown is None else min(max(0.0, countdown), MAX_COUNTDOWN)
        with self.celery.producer_or_acquire() as producer:
            for charge_id in ids:
                self.celery.send_task(name, args=[charge_id], countdown=delay, producer=producer)
