"""A subscription row and its ``BillingState``: the columns that hold the pure state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from billing.db.tables import Subscription
from billing.domain.state import BillingState, Period
from billing.domain.statuses import SubscriptionStatus


class SubscriptionColumns(Protocol):
    """What the state is read from: an ORM Subscription or a Core row of the table."""

    status: str
    plan_id: str
    anchor_at: datetime
    current_period_start: datetime | None
    current_period_end: datetime | None
    current_cycle: int | None
    due_period_start: datetime
    due_period_end: datetime
    due_cycle: int
    period_no: int
    attempt: int
    next_charge_at: datetime | None
    cancel_at_period_end: bool
    next_plan_id: str | None
    first_failed_at: datetime | None
    awaiting_new_card: bool


def load_state(row: SubscriptionColumns) -> BillingState:
    current = None
    if row.current_period_start is not None and row.current_period_end is not None:
        current = Period(row.current_period_start, row.current_period_end, row.current_cycle or 0)
    return BillingState(
        status=SubscriptionStatus(row.status),
        plan_id=row.plan_id,
        anchor=row.anchor_at,
        current=current,
        due=Period(row.due_period_start, row.due_period_end, row.due_cycle),
        period_no=row.period_no,
        attempt=row.attempt,
        next_charge_at=row.next_charge_at,
        cancel_at_period_end=row.cancel_at_period_end,
        next_plan_id=row.next_plan_id,
        first_failed_at=row.first_failed_at,
        awaiting_new_card=row.awaiting_new_card,
    )


def state_values(state: BillingState) -> dict[str, Any]:
    """The subscription columns that hold ``state``."""
    current = state.current
    return {
        "status": str(state.status),
        "plan_id": state.plan_id,
        "anchor_at": state.anchor,
        "current_period_start": current.start if current else None,
        "current_period_end": current.end if current else None,
        "current_cycle": current.cycle if current else None,
        "due_period_start": state.due.start,
        "due_period_end": state.due.end,
        "due_cycle": state.due.cycle,
        "period_no": state.period_no,
        "attempt": state.attempt,
        "next_charge_at": state.next_charge_at,
        "cancel_at_period_end": state.cancel_at_period_end,
        "next_plan_id": state.next_plan_id,
        "first_failed_at": state.first_failed_at,
        "awaiting_new_card": state.awaiting_new_card,
    }


def store_state(row: Subscription, state: BillingState) -> None:
    for column, value in state_values(state).items():
        setattr(row, column, value)
