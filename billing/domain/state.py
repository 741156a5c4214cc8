"""The state of a subscription's billing, as plain values: its periods and the numbers that
identify the next charge (``period_no``, ``attempt``). The transitions that change it are in
``billing.domain.lifecycle`` (lifecycle) and ``billing.domain.dunning`` (declines).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.domain.statuses import LIVE_STATUSES, SubscriptionStatus


@dataclass(frozen=True)
class Period:
    """A billing period [start, end). ``cycle`` counts periods from the anchor (0 = first)."""

    start: datetime
    end: datetime
    cycle: int = 0


@dataclass(frozen=True)
class BillingState:
    status: SubscriptionStatus
    plan_id: str
    anchor: datetime
    current: Period | None
    due: Period
    period_no: int
    attempt: int
    next_charge_at: datetime | None
    cancel_at_period_end: bool = False
    next_plan_id: str | None = None
    first_failed_at: datetime | None = None
    awaiting_new_card: bool = False

    @property
    def due_has_begun(self) -> bool:
        """True once a charge exists for the due period (it is then the current period)."""
        return self.attempt > 1 or (self.current is not None and self.current == self.due)

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES
