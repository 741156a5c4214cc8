"""The subscription lifecycle as pure transitions of a ``BillingState``.

A subscription always knows its *due* period: the next period to be charged, numbered by
``period_no`` (1 = first charged period), and the ``attempt`` that the next charge of that
period will carry. Together with the subscription's key they derive the merchant_uid, so
these three numbers are the charge identity. ``current`` is the period in effect: the trial,
the last paid period, or the due period once its first charge has been created; None before
anything has begun (a new subscription without trial, or one just re-anchored).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from billing.domain.calendar import first_period, following_period, trial_end
from billing.domain.plans import Plan
from billing.domain.state import BillingState, Period
from billing.domain.statuses import CHARGEABLE_STATUSES, LIVE_STATUSES, SubscriptionStatus
from billing.errors import Conflict

TRIAL_CYCLE = -1  # cycle number of a trial period


def start(plan: Plan, at: datetime) -> BillingState:
    """A new subscription to ``plan`` starting at ``at`` (trial first, when the plan has one)."""
    due = first_period(plan, at)
    end_of_trial = trial_end(plan, at)
    if end_of_trial is not None:
        trial = Period(at, end_of_trial, TRIAL_CYCLE)
        return BillingState(
            SubscriptionStatus.TRIALING, plan.id, due.start, trial, due, 1, 1, due.start
        )
    return BillingState(SubscriptionStatus.ACTIVE, plan.id, due.start, None, due, 1, 1, due.start)


def cancel(state: BillingState, at_period_end: bool) -> BillingState:
    """Cancel now, or at the end of the period already paid (or trial) being served."""
    _require_live(state, "cancel")
    if at_period_end and _serving_paid_period(state):
        return replace(state, cancel_at_period_end=True)
    return replace(state, status=SubscriptionStatus.CANCELED, next_charge_at=None)


def pause(state: BillingState) -> BillingState:
    if state.status not in LIVE_STATUSES - {SubscriptionStatus.PAUSED}:
        raise Conflict(f"cannot pause a subscription that is {state.status}")
    return replace(state, status=SubscriptionStatus.PAUSED, next_charge_at=None)


def resume(state: BillingState, plan: Plan, now: datetime) -> BillingState:
    """Resume a paused subscription; ``plan`` is the plan it resumes on (a pending change's).

    Resumed inside a period that is already paid (or a trial), the original schedule is kept:
    charging again at once would bill the customer twice for the same days. Otherwise the
    subscription is charged at once and re-anchored to ``now``.
    """
    if state.status != SubscriptionStatus.PAUSED:
        raise Conflict(f"cannot resume a subscription that is {state.status}")
    if _serving_paid_period(state) and state.current is not None and state.current.end > now:
        trialing = state.current.cycle == TRIAL_CYCLE
        status = SubscriptionStatus.TRIALING if trialing else SubscriptionStatus.ACTIVE
        return replace(state, status=status, next_charge_at=state.due.start)
    return _reanchor(state, plan, now, SubscriptionStatus.ACTIVE)


def change_plan(state: BillingState, new: Plan) -> BillingState:
    """Switch to ``new`` from the next period whose charge has not begun.

    The new plan's calendar is anchored where the old plan's next period would have started.
    When the due period has begun (a charge is in flight, or dunning is running), the switch
    waits for the period after it.
    """
    _require_live(state, "change the plan of")
    if new.id == state.plan_id:
        if state.next_plan_id is None:
            raise Conflict(f"the subscription is already on plan {new.id!r}")
        return replace(state, next_plan_id=None)
    if state.due_has_begun:
        return replace(state, next_plan_id=new.id)
    due = first_period(replace(new, trial_days=0), state.due.start)
    next_charge_at = due.start if state.next_charge_at is not None else None
    return replace(
        state,
        plan_id=new.id,
        anchor=due.start,
        due=due,
        next_charge_at=next_charge_at,
        next_plan_id=None,
    )


def _reanchor(
    state: BillingState, plan: Plan, at: datetime, status: SubscriptionStatus
) -> BillingState:
    due = first_period(replace(plan, trial_days=0), at)
    abandoned = 1 if state.due_has_begun else 0
    return replace(
        state,
        status=status,
        plan_id=plan.id,
        anchor=due.start,
        current=None,
        due=due,
        period_no=state.period_no + abandoned,
        attempt=1,
        next_charge_at=due.start,
        next_plan_id=None,
        first_failed_at=None,
        awaiting_new_card=False,
    )


def _serving_paid_period(state: BillingState) -> bool:
    """True when ``current`` is a paid period or a trial, not the unpaid due period."""
    return state.current is not None and not state.due_has_begun


def _require_live(state: BillingState, verb: str) -> None:
    if not state.is_live:
        raise Conflict(f"cannot {verb} a subscription that is {state.status}")


def begin_period(state: BillingState) -> BillingState:
    """A charge for the due period has been created: the period is now in effect."""
    status = (
        SubscriptionStatus.ACTIVE if state.status == SubscriptionStatus.TRIALING else state.status
    )
    return replace(state, status=status, current=state.due, next_charge_at=None)


def record_payment(state: BillingState, plan: Plan, next_plan: Plan | None) -> BillingState:
    """The due period is paid: it becomes current and the following period becomes due.

    ``plan`` is the plan of the paid period; ``next_plan`` the plan of a pending change,
    whose calendar starts where the paid period ends. A past-due subscription recovers;
    the renewal stays on the original schedule (anchor unchanged).
    """
    paid = state.due
    if next_plan is not None:
        due = first_period(replace(next_plan, trial_days=0), paid.end)
        anchor, plan_id = due.start, next_plan.id
    else:
        due, anchor, plan_id = following_period(plan, paid, state.anchor), state.anchor, plan.id
    status = state.status
    if status in CHARGEABLE_STATUSES:
        status = SubscriptionStatus.ACTIVE
    return replace(
        state,
        status=status,
        plan_id=plan_id,
        anchor=anchor,
        current=paid,
        due=due,
        period_no=state.period_no + 1,
        attempt=1,
        first_failed_at=None,
        next_plan_id=None,
        next_charge_at=due.start if status == SubscriptionStatus.ACTIVE else None,
        awaiting_new_card=False,
    )


def skip_period(state: BillingState, plan: Plan) -> BillingState:
    """The due period costs nothing (a prorated 0 KRW): move on without charging."""
    following = following_period(plan, state.due, state.anchor)
    return replace(state, due=following, next_charge_at=following.start)


def cancel_at_renewal(state: BillingState) -> BillingState:
    """Cancel-at-period-end reaches the renewal: cancel instead of charging."""
    return replace(state, status=SubscriptionStatus.CANCELED, next_charge_at=None)


def card_updated(state: BillingState, now: datetime) -> BillingState:
    """The customer has a new card: a past-due subscription is retried at once."""
    if state.status != SubscriptionStatus.PAST_DUE:
        raise Conflict(f"only a past_due subscription is retried, this one is {state.status}")
    return replace(state, awaiting_new_card=False, next_charge_at=now)
