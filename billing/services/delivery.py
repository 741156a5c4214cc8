"""Delivering notices from the outbox, at least once.

The scheduler publishes due rows (``notices_to_deliver``); a worker takes one under a lease
(pending -> sending), sends it with no transaction open, then marks it delivered, or
pending again with a capped exponential backoff. A worker that dies between sending and
marking leaves an expired lease: the row is published and sent again, with the same
event_id, so receivers de-duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Notice
from billing.domain import notices
from billing.domain.events import NoticeDelivered
from billing.domain.notices import DeliveryStatus
from billing.services.history import record_event

DUE = [str(status) for status in notices.DUE]


@dataclass(frozen=True)
class NoticeWork:
    notice_id: int
    subscription_id: int | None
    event_id: str
    kind: str
    channel: str
    config: dict[str, Any]
    recipient: str | None
    payload: dict[str, Any]
    attempt: int


def notices_to_deliver(session: Session, wall: datetime, limit: int) -> list[int]:
    """Pending rows that are due, and sending rows whose lease expired (their sender died)."""
    query = (
        select(Notice)
        .where(Notice.status.in_(DUE), Notice.next_attempt_at <= wall)
        .order_by(Notice.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.scalars(query).all()
    for row in rows:
        row.status, row.updated_at = DeliveryStatus.PENDING, wall
        row.next_attempt_at = wall + notices.DELIVERY_LEASE
    return [row.id for row in rows]


def begin_delivery(session: Session, notice_id: int, wall: datetime) -> NoticeWork | None:
    query = select(Notice).where(Notice.id == notice_id).with_for_update(skip_locked=True)
    row = session.scalar(query)
    if row is None or row.status != DeliveryStatus.PENDING:
        return None
    row.status, row.attempts = DeliveryStatus.SENDING, row.attempts + 1
    row.next_attempt_at, row.updated_at = wall + notices.DELIVERY_LEASE, wall
    return NoticeWork(
        row.id,
        row.subscription_id,
        row.event_id,
        row.kind,
        row.channel,
        dict(row.channel_config),
        row.recipient,
        dict(row.payload),
        row.attempts,
    )


def finish_delivery(
    session: Session,
    work: NoticeWork,
    error: str | None,
    now: datetime,
    wall: datetime,
    jitter: float = 0.5,
) -> None:
    row = session.scalar(select(Notice).where(Notice.id == work.notice_id).with_for_update())
    assert row is not None
    if row.status == DeliveryStatus.DELIVERED:
        return
    if error is None:
        row.status, row.delivered_at = DeliveryStatus.DELIVERED, wall
        row.updated_at, row.last_error = wall, None
        record_event(
            session,
            NoticeDelivered(
                notice=row.kind, channel=row.channel, event_id=row.event_id, attempts=row.attempts
            ),
            now,
            subscription_id=row.subscription_id,
            charge_id=row.charge_id,
        )
        return
    row.status, row.last_error = DeliveryStatus.PENDING, error[:500]
    row.next_attempt_at = wall + notices.next_attempt_after(work.attempt, jitter)
    row.updated_at = wall


def pending_count(session: Session) -> int:
    from sqlalchemy import func

    return int(
        session.scalar(select(func.count()).select_from(Notice).where(Notice.status.in_(DUE))) or 0
    )
