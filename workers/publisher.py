"""Publishing tasks by name, so the scheduler needs none of the worker's code."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from billing.errors import BrokerUnavailable
from workers.config import CHARGE_BATCH, MAX_COUNTDOWN

CHARGE = "billing.charge"
RECONCILE = "billing.reconcile"
NOTIFY = "billing.notify"
REFUND = "billing.refund"
LEDGER = "billing.reconcile_ledger"


class CeleryPublisher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        """In messages of up to CHARGE_BATCH charges: one transaction takes each batch."""
        batches = [
            list(charge_ids[i : i + CHARGE_BATCH]) for i in range(0, len(charge_ids), CHARGE_BATCH)
        ]
        self._send(CHARGE, batches, countdown)

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self._send(RECONCILE, charge_ids, countdown)

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None:
        self._send(REFUND, refund_ids, countdown)

    def reconcile_ledger(self) -> None:
        self._send(LEDGER, [None], None)

    def notify(self, notice_ids: Sequence[int]) -> None:
        self._send(NOTIFY, notice_ids, None)

    def _send(self, name: str, ids: Sequence[object], countdown: float | None) -> None:
        if not ids:
            return
        delay = None if countdown is None else min(max(0.0, countdown), MAX_COUNTDOWN)
        try:
            with self.celery.producer_or_acquire() as producer:
                for argument in ids:
                    self.celery.send_task(name, args=[argument], countdown=delay,
                                          producer=producer)  # fmt: skip
        except (KombuOperationalError, OSError) as exc:
            raise BrokerUnavailable(f"cannot reach the broker: {exc}") from exc
