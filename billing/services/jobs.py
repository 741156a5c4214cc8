"""Jobs that run at most once a period, whichever scheduler claims them first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.db.tables import JobRun

LEDGER = "ledger"  # the ledger reconciliation (SPEC 10)
LEDGER_EVERY = timedelta(days=1)
LEDGER_WINDOW = timedelta(days=3)  # each run reads PortOne's last three days (they overlap)


def claim_job(session: Session, name: str, wall: datetime, every: timedelta) -> bool:
    """True for the one caller that claims the job's run for this period (system clock)."""
    if session.get(JobRun, name) is None:  # its row is made by the migration; made again here
        try:
            with session.begin_nested():
                session.add(JobRun(name=name, last_started_at=wall))
            return True
        except IntegrityError:  # another scheduler made it first: it runs this one
            return False
    statement = (
        update(JobRun)
        .where(
            JobRun.name == name,
            or_(JobRun.last_started_at.is_(None), JobRun.last_started_at <= wall - every),
        )
        .values(last_started_at=wall)
        .execution_options(synchronize_session=False)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def finish_job(session: Session, name: str, wall: datetime, summary: dict[str, Any]) -> None:
    session.execute(
        update(JobRun)
        .where(JobRun.name == name)
        .values(last_finished_at=wall, summary=summary)
        .execution_options(synchronize_session=False)
    )


def last_run(session: Session, name: str) -> JobRun | None:
    return session.get(JobRun, name)
