"""The refund task: settle one open refund (send it, look it up, send it again).

Published by the scheduler's sweep for refunds whose outcome was not seen, or whose process
died; ``billing charges refund`` itself runs the steps in the command's process.
"""

from __future__ import annotations

from billing.services.refunds import reconcile_refund
from workers.app import app
from workers.container import container
from workers.publisher import REFUND
from workers.tasks import DATABASE_RETRY


@app.task(name=REFUND, **DATABASE_RETRY)
def refund(refund_id: int) -> str | None:
    """Settle one refund with PortOne (idempotent by refund id: a duplicate looks it up)."""
    built = container()
    return reconcile_refund(built.app, built.gateway, refund_id)
