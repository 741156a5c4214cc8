"""The Celery tasks: each a thin shell over one service, named explicitly so that moving code
strands no queued message; and this process's worker parts, built on first use after any fork
(the database pool and the HTTP pool follow the worker's concurrency, ``-c N``).

``register`` puts the tasks on a Celery app (``workers.app`` for ``celery -A workers``,
``billing.embedded`` for ``billing run`` and the demo) with the function that builds the
parts (``bootstrap.worker_parts``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_shutdown
from sqlalchemy.exc import DBAPIError

from billing.bootstrap import Container
from billing.broker import CHARGE, DEFAULT_CONCURRENCY, LEDGER, NOTIFY, RECONCILE, REFUND
from billing.errors import DatabaseUnavailable
from billing.services.jobs import LEDGER as LEDGER_JOB
from billing.services.jobs import LEDGER_WINDOW, finish_job
from billing.services.ledger import reconcile_ledger as compare_ledgers
from billing.services.refunds import reconcile_refund

DATABASE_RETRY: dict[str, Any] = {
    "autoretry_for": (DBAPIError, DatabaseUnavailable),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 10,
}
Builder = Callable[[int], Container]


class _Slot:
    """This process's parts, built on first use; forked children start empty."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.built: Container | None = None
        self.build: Builder | None = None
        self.concurrency = DEFAULT_CONCURRENCY


_slot = _Slot()


def register(celery: Celery, build: Builder) -> None:
    """The tasks on ``celery``; ``build(concurrency)`` makes the parts they use."""
    _slot.build = build
    for name, task in (
        (CHARGE, charge),
        (RECONCILE, reconcile),
        (NOTIFY, notify),
        (REFUND, refund),
        (LEDGER, reconcile_ledger),
    ):
        celery.task(name=name, **DATABASE_RETRY)(task)


def container() -> Container:
    built = _slot.built  # built once per process: every task after the first takes no lock
    if built is not None:
        return built
    with _slot.lock:
        if _slot.built is None:
            assert _slot.build is not None, "tasks used before register()"
            _slot.built = _slot.build(_slot.concurrency)
        return _slot.built


def install(built: Container) -> None:
    """Use ``built`` in this process (``billing run`` and the demo bring their own)."""
    with _slot.lock:
        _slot.built = built


def reset() -> None:
    with _slot.lock:
        if _slot.built is not None:
            _slot.built.close()
        _slot.built = None


@worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    _slot.concurrency = int(getattr(sender, "concurrency", None) or DEFAULT_CONCURRENCY)


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    _slot.lock = threading.Lock()
    _slot.built = None  # never reuse the parent's pooled connections in a forked child


@worker_shutdown.connect
def _close(**_: Any) -> None:
    reset()


# -- the tasks ---------------------------------------------------------------------------------


def charge(charge_ids: int | list[int]) -> str | None:
    """Send pending charges (one id, or a batch of ids) to PortOne and record the outcomes
    (idempotent by charge id)."""
    return container().pipeline.charge(charge_ids)


def reconcile(charge_id: int) -> str | None:
    """Resolve an open charge by merchant_uid before anything else is sent."""
    return container().pipeline.reconcile(charge_id)


def notify(notice_id: int) -> str | None:
    """Send one notice from the outbox (log, webhook or e-mail); at least once."""
    built = container()
    return built.pipeline.deliver(notice_id, built.sender)


def refund(refund_id: int) -> str | None:
    """Settle one refund with PortOne (idempotent by refund id: a duplicate looks it up)."""
    built = container()
    return reconcile_refund(built.app, built.gateway, refund_id)


def reconcile_ledger(_: None = None) -> str:
    """Compare PortOne's ledger of the last days with ours and repair what differs."""
    built = container()
    until = built.app.clocks.system.now()
    report = compare_ledgers(
        built.app, built.gateway, until - LEDGER_WINDOW, until, built.pipeline.plans
    )
    summary = {
        "read": report.read,
        "ours": report.ours,
        "repaired": report.repaired,
        "reported": len(report.findings) - report.repaired,
        "agree": report.agree,
    }
    with built.app.transaction() as session:
        finish_job(session, LEDGER_JOB, built.app.clocks.system.now(), summary)
    return "agree" if report.agree else "reported"
