"""What an operator asks for that the lifecycle services do not offer: retry a past-due
subscription now, and send a notice again.

Both record their event in the caller's transaction; the caller names the operator and the
reason with ``acting_as``, as for every other action.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Notice, Subscription
from billing.domain import lifecycle
from billing.domain.events import NoticeResend, RetryNow
from billing.errors import Conflict, NotFound
from billing.services.history import record_event
from billing.services.locks import lock_open_charges
from billing.services.rows import load_state, store_state
from billing.services.subscriptions import get_subscription

SENDING = "sending"


def retry_now(session: Session, subscription_id: int, now: datetime) -> Subscription:
    """A past-due subscription becomes due at ``now``: the scheduler's next pass charges it.

    Refused while a charge is being settled (its outcome decides what happens next), and for
    any status but past_due. A row the scheduler set aside gets another try."""
    busy = lock_open_charges(session, subscription_id)  # charges before the subscription
    row = get_subscription(session, subscription_id, lock=True)
    if busy:
        raise Conflict(
            f"subscription {subscription_id} has charge {busy[0].merchant_uid} being settled "
            f"({busy[0].status}); it is retried by its own outcome, try again once it is "
            "paid or failed"
        )
    store_state(row, lifecycle.card_updated(load_state(row), now))
    row.updated_at = now
    row.set_aside_at = row.set_aside_reason = None
    record_event(
        session,
        RetryNow(next_charge_at=now.isoformat(), attempt=row.attempt),
        now,
        subscription_id=row.id,
    )
    return row


def resend_notice(session: Session, notice_id: int, now: datetime, wall: datetime) -> Notice:
    """Make a notice due at once (delivered, failing or waiting): it is sent again with the
    same event id, so a receiver that already has it can tell. Refused while a worker holds
    it under a live lease."""
    query = select(Notice).where(Notice.id == notice_id).with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"no notice {notice_id}")
    if row.status == SENDING and row.next_attempt_at > wall:
        raise Conflict(f"notice {notice_id} is being sent right now; look again in a minute")
    before = row.status
    row.status, row.next_attempt_at, row.updated_at = "pending", wall, wall
    record_event(
        session,
        NoticeResend(
            notice=row.kind, channel=row.channel, event_id=row.event_id, status_before=before
        ),
        now,
        subscription_id=row.subscription_id,
        charge_id=row.charge_id,
    )
    return row
