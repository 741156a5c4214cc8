"""Taking a customer over from PortOne's hosted scheduler: the decisions, pure (SPEC 10).

The import runs in three steps, each safe to be killed after (decision record 24):

1. **Hold.** Read the customer's schedules at PortOne; ``refusal`` says whether they can be
   taken over. The subscription is created *held*: it is not charged here until released.
   PortOne may still fire its schedules; only PortOne charges, as before.
2. **Unschedule** every waiting schedule of the customer at PortOne. From here until the
   release nobody charges; a period that falls due meanwhile is charged on release.
3. **Release.** Read the schedules back. ``release`` decides from what PortOne holds *now*:
   a schedule that fired before the unschedule was charged by PortOne and is never charged
   here; the first schedule PortOne revoked is the first period charged here. Nothing still
   waiting at PortOne may remain, or the customer stays held.

A re-run after a kill repeats the step that did not finish: an unschedule with nothing left
to revoke is not an error, and ``release`` reads only PortOne's answer, never our memory of
what we sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from billing.domain.calendar import first_period, following_period
from billing.domain.plans import Plan


@dataclass(frozen=True)
class HostedSchedule:
    """One payment PortOne's scheduler holds (or held) for a customer."""

    merchant_uid: str
    schedule_at: int  # unix seconds
    amount: int
    status: str  # scheduled | executed | revoked
    payment_status: str  # "" before it fired; paid | failed | cancelled | ready after

    @property
    def waiting(self) -> bool:
        return self.status == "scheduled"

    @property
    def paid(self) -> bool:
        """Fired and charged (a later refund does not make the period unbilled)."""
        return self.status == "executed" and self.payment_status in ("paid", "cancelled")


@dataclass(frozen=True)
class Release:
    """The customer is charged here from ``first_charge_at`` on."""

    first_charge_at: datetime
    revoked: tuple[str, ...]  # merchant_uids PortOne will never charge: ours from now on
    fired: tuple[str, ...]  # fired at PortOne after the hold: charged there, never here
    declined: tuple[str, ...]  # fired at PortOne and declined: reported, not retried here


@dataclass(frozen=True)
class StillWaiting:
    """PortOne still holds waiting schedules: the customer stays held (run the import again)."""

    merchant_uids: tuple[str, ...]


def takeover_plan(plan: Plan) -> Plan:
    """The plan as a taken-over customer is billed on it: no trial, no prorated first period
    (the customer has been paying PortOne's schedules already)."""
    return replace(plan, trial_days=0, prorate_first=False)


def refusal(schedules: list[HostedSchedule], plan: Plan) -> str | None:
    """Why these schedules cannot be taken over onto ``plan`` (nothing is changed then)."""
    waiting = [item for item in schedules if item.waiting]
    if not waiting:
        return "PortOne holds no waiting schedule for this customer: nothing to take over"
    wrong = next((item for item in waiting if item.amount != plan.amount), None)
    if wrong is not None:
        return (
            f"schedule {wrong.merchant_uid} is for {wrong.amount} KRW but plan {plan.id} "
            f"costs {plan.amount} KRW: import it onto a plan of that price"
        )
    return None


def first_waiting_at(schedules: list[HostedSchedule]) -> datetime:
    """When the first schedule still waiting at PortOne is set for (the held start)."""
    return _moment(min(item.schedule_at for item in schedules if item.waiting))


def release(held: frozenset[str], now: list[HostedSchedule], plan: Plan) -> Release | StillWaiting:
    """What to do with a held customer, given the merchant_uids that were waiting when it was
    held (``held``) and the customer's schedules at PortOne now (after the unschedule)."""
    waiting = tuple(item.merchant_uid for item in now if item.waiting)
    if waiting:
        return StillWaiting(waiting)
    ours = [item for item in now if item.merchant_uid in held]
    revoked = [item for item in ours if item.status == "revoked"]
    fired = [item for item in ours if item.status == "executed"]
    last_fired = max((item.schedule_at for item in fired), default=None)
    takeover = [item for item in revoked if last_fired is None or item.schedule_at > last_fired]
    if takeover:
        first = _moment(min(item.schedule_at for item in takeover))
    else:  # every held schedule fired at PortOne: the period after the last one is ours
        assert last_fired is not None, "held schedules are neither revoked nor fired"
        first = _after(plan, _moment(last_fired))
    return Release(
        first_charge_at=first,
        revoked=tuple(item.merchant_uid for item in revoked),
        fired=tuple(item.merchant_uid for item in fired if item.paid),
        declined=tuple(item.merchant_uid for item in fired if not item.paid),
    )


def _after(plan: Plan, last: datetime) -> datetime:
    billed = takeover_plan(plan)
    period = first_period(billed, last)
    return following_period(billed, period, period.start).start


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
