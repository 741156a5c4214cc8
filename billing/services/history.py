"""Writing to the append-only event log, and who is acting.

``record_event(session, payload, now, ...)`` writes one event: its kind and fields are the
payload's (``billing.domain.events``). ``acting_as(actor, reason)`` names who asks for the
writes made inside it (``cli``, ``api:<key name>``, ``ops:<user>``) and the reason they
gave; ``record_event`` adds both to every event it writes there. It is a context variable,
not a session attribute, because some use cases (a refund, a billing key) open several
transactions of their own. Outside of it (the scheduler, the workers) events carry no actor:
the product acted on its own schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from billing.clock import system_now
from billing.db.tables import Event
from billing.domain.events import EventPayload, event_data

_ACTING: ContextVar[tuple[str, str | None] | None] = ContextVar("billing_actor", default=None)


@contextmanager
def acting_as(actor: str, reason: str | None = None) -> Iterator[None]:
    """Every event recorded inside the block carries ``actor`` (and ``reason`` if given)."""
    token = _ACTING.set((actor, reason))
    try:
        yield
    finally:
        _ACTING.reset(token)


def current_actor() -> str | None:
    acting = _ACTING.get()
    return acting[0] if acting else None


def _who(data: dict[str, Any]) -> dict[str, Any]:
    acting = _ACTING.get()
    if acting is None:
        return data
    actor, reason = acting
    extra = {"reason": reason} if reason and data.get("reason") is None else {}
    return {**data, "actor": actor, **extra}


def event_row(
    payload: EventPayload,
    now: datetime,
    recorded_at: datetime,
    *,
    subscription_id: int | None = None,
    charge_id: int | None = None,
) -> dict[str, Any]:
    """One event as a row for a Core bulk insert (``insert(EVENTS)`` with a list of these):
    the kind and data ``record_event`` would store, without who acted (the two bulk writers,
    the claim and ``subscriptions import``, never recorded it)."""
    return {
        "subscription_id": subscription_id,
        "charge_id": charge_id,
        "kind": payload.kind.value,
        "data": event_data(payload),
        "occurred_at": now,
        "recorded_at": recorded_at,
    }


def record_event(
    session: Session,
    payload: EventPayload,
    now: datetime,
    *,
    subscription_id: int | None = None,
    charge_id: int | None = None,
) -> Event:
    """Append one event in the caller's transaction (it commits with the state change)."""
    event = Event(
        subscription_id=subscription_id,
        charge_id=charge_id,
        kind=payload.kind.value,
        data=_who(event_data(payload)),
        occurred_at=now,
        recorded_at=system_now(),
    )
    session.add(event)
    return event
