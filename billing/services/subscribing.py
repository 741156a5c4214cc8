"""Subscribing a customer from what a person typed: the plan, and a start time as text
(a CLI option or an API field) read in the plan's own zone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from billing.config import Settings
from billing.db.tables import Subscription
from billing.domain.times import parse_time
from billing.errors import InvalidInput
from billing.services import plan_store
from billing.services.subscriptions import create_subscription


def subscribe(
    session: Session,
    settings: Settings,
    customer_uid: str,
    plan_id: str,
    start: str | None,
    now: datetime,
    *,
    start_field: str = "--start",
) -> Subscription:
    """A new subscription starting at ``start`` (ISO 8601; default ``now``; without an
    offset, in the plan's zone). ``start_field`` names the field in an error."""
    plan_store.ensure_catalog(session, settings, now)
    plan = plan_store.current_plan(session, plan_id)
    begin = now
    if start is not None:
        try:
            begin = parse_time(start, plan.zone)
        except ValueError as exc:
            raise InvalidInput(f"{start_field}: {exc}") from None
    return create_subscription(session, customer_uid, plan_id, begin, now)
