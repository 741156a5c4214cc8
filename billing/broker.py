"""The broker side of the product: Celery's settings for money (see CELERY.md: late acks, no
loss on worker death, no prefetch, timeouts nested inside each other, results ignored, since
PostgreSQL is the truth) and the publisher of tasks by name (so a scheduler needs none of
the worker's code). A lost or duplicated message is harmless: rows are the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from billing.config import Settings
from billing.errors import BrokerUnavailable

QUEUE = "billing"
DEFAULT_POOL = "threads"  # charging waits on PortOne: an I/O-bound pool
DEFAULT_CONCURRENCY = 32
CHARGE_BATCH = 16  # charges per billing.charge message from the scheduler
CALLS_PER_THREAD = 4  # PortOne calls in flight per worker thread (the process's call pool)
# seconds; anything later lives in the database (resend_at, next_lookup_at, next_charge_at)
MAX_COUNTDOWN = 120.0


def publisher_app(settings: Settings) -> Celery:
    """A Celery app that only publishes (a scheduler's, a web process's): no task of its own."""
    celery = Celery("billing-publisher", set_as_current=False)
    celery.conf.update(celery_config(settings))
    return celery


def celery_config(settings: Settings) -> dict[str, Any]:
    # A charge task makes at most a token request, a call and one replay; a reconcile task
    # two lookups (each with a possible token request): HTTP timeout < soft < hard limit.
    soft_limit = 4 * settings.portone_timeout + 30
    hard_limit = soft_limit + 30
    visibility = max(3600, int(4 * hard_limit), int(4 * MAX_COUNTDOWN))
    transport: dict[str, Any] = {"visibility_timeout": visibility}
    if (settings.broker_url or "").startswith(("redis://", "rediss://")):
        transport |= {"socket_timeout": 10, "socket_connect_timeout": 10, "socket_keepalive": True}
    if settings.broker_url is None:
        transport |= {"polling_interval": 0.005}  # the in-process broker is polled
    return {
        "broker_url": settings.broker_url or "memory://",
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a Redis outage is waited out, never an exit
        "broker_connection_timeout": 10,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_pool": DEFAULT_POOL,
        "worker_concurrency": DEFAULT_CONCURRENCY,
        # False: with it on, Celery 5.7 on Redis crashes the worker on reconnection ("Unrecoverable
        # error ... 'NoneType'", celery #9250; reproduced by the chaos run), and a threads pool
        # cannot cancel a task anyway. A task whose ack was lost with the connection runs again
        # later and finds its charges no longer pending: idempotent by charge id.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": 15.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_soft_time_limit": soft_limit,
        "task_time_limit": hard_limit,
        "worker_send_task_events": True,
        "task_send_sent_event": False,  # a 2nd publish per task; Flower uses the worker events
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


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
                    self.celery.send_task(name, args=[argument], countdown=delay, producer=producer)
        except (KombuOperationalError, OSError) as exc:
            raise BrokerUnavailable(f"cannot reach the broker: {exc}") from exc
