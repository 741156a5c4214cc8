"""The Celery application of ``celery -A workers``. Creating it connects to nothing; settings
are read on first use, and the worker's parts are built after any fork."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready

import workers.logging_setup  # noqa: F401 (setup_logging signal: JSON lines, one redacting filter)
from billing import bootstrap, tasks
from billing.app import build_app
from billing.broker import DEFAULT_CONCURRENCY, CeleryPublisher, celery_config
from billing.config import load_settings
from billing.db.capacity import check_before_opening
from billing.db.engine import pool_overflow
from billing.errors import BillingError, DatabaseUnavailable
from billing.logs import log
from billing.preflight import Role, require
from workers import dashboard
from workers.compat import survive_redis_restarts

logger = logging.getLogger("billing.worker")


def create_app() -> Celery:
    survive_redis_restarts()
    dashboard.install()
    celery = Celery("billing", set_as_current=False)
    celery.on_configure.connect(_configure, weak=False)
    tasks.register(celery, lambda concurrency: _parts(celery, concurrency))
    worker_init.connect(_ours(celery, _preflight), weak=False)
    worker_ready.connect(_ours(celery, _check_capacity), weak=False)
    return celery


def _ours(celery: Celery, receiver: Callable[..., None]) -> Callable[..., None]:
    """``receiver`` for workers of this app only (signals are global to the process)."""

    def receive(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is celery:
            receiver(sender=sender, **kwargs)

    return receive


def _check_capacity(sender: Any = None, **_: Any) -> None:
    """At start, before its pool opens: would this worker's pool, with every other billing
    pool, exceed PostgreSQL's max_connections? A warning, never a refusal."""
    concurrency = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 0)
    concurrency = concurrency or DEFAULT_CONCURRENCY
    planned = concurrency + pool_overflow(concurrency)
    settings = load_settings()
    capacity = check_before_opening(
        settings.database_url, planned, pgbouncer=settings.database_pgbouncer
    )
    bootstrap.warn_if_short(capacity)


def _preflight(**_: Any) -> None:
    """A worker that could not charge does not start: one line naming the variable."""
    try:
        settings = load_settings()
        require(settings, Role.WORKER)
        build_app(settings, pool_size=1).close()  # a wrong URL or an old schema: refused now
    except DatabaseUnavailable as exc:  # an outage: its tasks wait for the database
        log(logger, "store_unavailable", exc.message, level=logging.WARNING, store="database")
    except BillingError as exc:
        refuse(exc.message)


def refuse(message: str) -> None:
    print(f"billing: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(load_settings()))


def _parts(celery: Celery, concurrency: int) -> bootstrap.Container:
    return bootstrap.worker_parts(load_settings(), CeleryPublisher(celery), concurrency)


app = create_app()
