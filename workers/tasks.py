"""Tasks: each a thin shell over one service, named explicitly so moves strand nothing."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from workers.app import app
from workers.container import container
from workers.publisher import CHARGE, NOTIFY, RECONCILE

DATABASE_RETRY = {"autoretry_for": (DBAPIError,), "retry_backoff": 2, "retry_backoff_max": 60,
                  "max_retries": 10}  # fmt: skip


@app.task(name=CHARGE, **DATABASE_RETRY)
def charge(charge_ids: int | list[int]) -> str | None:
    """Send pending charges (one id, or a batch of ids) to PortOne and record the outcomes
    (idempotent by charge id)."""
    return container().pipeline.charge(charge_ids)


@app.task(name=RECONCILE, **DATABASE_RETRY)
def reconcile(charge_id: int) -> str | None:
    """Resolve an unknown outcome by merchant_uid before anything else is sent."""
    return container().pipeline.reconcile(charge_id)


@app.task(name=NOTIFY, **DATABASE_RETRY)
def notify(notice_id: int) -> str | None:
    """Send one notice from the outbox (log, webhook or e-mail); at least once."""
    built = container()
    return built.pipeline.deliver(notice_id, built.sender)
