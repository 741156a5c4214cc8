"""The refund task: settle one open refund (send it, look it up, send it again); and the
daily ledger reconciliation (PortOne's payments compared with ours and repaired).

Published by the scheduler's sweep for refunds whose outcome was not seen, or whose process
died; ``billing charges refund`` itself runs the steps in the command's process. The ledger
task is published once a day by whichever scheduler claims it (``billing.services.jobs``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing.services.jobs import LEDGER as LEDGER_JOB
from billing.services.jobs import LEDGER_WINDOW, finish_job
from billing.services.ledger import reconcile_ledger as compare_ledgers
from billing.services.refunds import reconcile_refund
from workers.app import app
from workers.container import container
from workers.publisher import LEDGER, REFUND
from workers.tasks import DATABASE_RETRY


@app.task(name=REFUND, **DATABASE_RETRY)
def refund(refund_id: int) -> str | None:
    """Settle one refund with PortOne (idempotent by refund id: a duplicate looks it up)."""
    built = container()
    return reconcile_refund(built.app, built.gateway, refund_id)


@app.task(name=LEDGER, **DATABASE_RETRY)
def reconcile_ledger(_: None = None) -> str:
    """Compare PortOne's ledger of the last days with ours and repair what differs."""
    built = container()
    until = datetime.now(UTC)
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
        finish_job(session, LEDGER_JOB, datetime.now(UTC), summary)
    return "agree" if report.agree else "reported"
