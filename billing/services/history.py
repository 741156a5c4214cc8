"""Writing to the append-only event log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from billing.db.tables import Event


def record_event(
    session: Session,
    kind: str,
    now: datetime,
    *,
    subscription_id: int | None = None,
    charge_id: int | None = None,
    **data: Any,
) -> Event:
    """Append one event in the caller's transaction (it commits with the state change)."""
    event = Event(
        subscription_id=subscription_id,
        charge_id=charge_id,
        kind=kind,
        data=data,
        occurred_at=now,
        recorded_at=datetime.now(UTC),
    )
    session.add(event)
    return event
