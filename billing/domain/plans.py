"""Plans, dunning policies and notice channels: the catalog as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from billing.domain.dunning import DunningPolicy
from billing.domain.durations import Interval

MIN_INSTALLMENT_AMOUNT = 50_000  # KRW; card_quota is refused below this (PortOne V1)


@dataclass(frozen=True)
class NotifyChannel:
    """Where notices go: ``log``, ``webhook`` or ``email`` with their settings."""

    type: str
    settings: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        return dict(self.settings).get(key)


@dataclass(frozen=True)
class Reminders:
    """How long before an event its reminder notice goes out; zero turns it off."""

    upcoming_renewal: timedelta = timedelta(days=3)
    trial_will_end: timedelta = timedelta(days=3)


@dataclass(frozen=True)
class Plan:
    """One version of a plan. Exactly one of ``interval`` and ``cron`` is set."""

    id: str
    name: str
    amount: int
    zone: ZoneInfo
    interval: Interval | None = None
    cron: str | None = None
    trial_days: int = 0
    prorate_first: bool = True
    card_quota: int | None = None
    dunning: DunningPolicy = field(default_factory=DunningPolicy)
    version: int = 0

    def __post_init__(self) -> None:
        if (self.interval is None) == (self.cron is None):
            raise ValueError(f"plan {self.id!r} needs exactly one of interval and cron")
        if type(self.amount) is not int or self.amount <= 0:
            raise ValueError(f"plan {self.id!r} amount must be a positive integer")

    @property
    def schedule_text(self) -> str:
        return f"every {self.interval}" if self.interval else f"cron {self.cron}"

    def same_terms(self, other: Plan) -> bool:
        """True when both define the same plan, whatever their version numbers."""
        return _terms(self) == _terms(other)


def _terms(plan: Plan) -> tuple[object, ...]:
    return (
        plan.id,
        plan.name,
        plan.amount,
        plan.zone.key,
        plan.interval,
        plan.cron,
        plan.trial_days,
        plan.prorate_first,
        plan.card_quota,
        plan.dunning,
    )


@dataclass(frozen=True)
class Catalog:
    """A whole plan catalog file, validated."""

    zone: ZoneInfo
    dunning: DunningPolicy
    notify: tuple[NotifyChannel, ...]
    plans: tuple[Plan, ...]
    reminders: Reminders = field(default_factory=Reminders)

    def plan(self, plan_id: str) -> Plan | None:
        return next((p for p in self.plans if p.id == plan_id), None)
