"""Dunning, transition by transition: (state, decline, expected action and next attempt).

Pure: no database. Policy: retry 1 day, 3 days and 7 days after the first failure, then the
final action.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from billing.domain import lifecycle
from billing.domain.dunning import (
    CARD_WINDOW,
    DeclineAction,
    DunningPolicy,
    FinalAction,
    card_busy,
    card_postponed_until,
    end_dunning,
    final_notice,
    needs_lookup,
    record_decline,
)
from billing.domain.notices import NoticeKind
from billing.domain.state import BillingState
from billing.domain.statuses import SubscriptionStatus
from tests.unit.plans_factory import monthly

T0 = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = DunningPolicy((DAY, 3 * DAY, 7 * DAY), FinalAction.CANCEL)
PAUSING = DunningPolicy((DAY,), FinalAction.PAUSE)


def begun(**changes: object) -> BillingState:
    """A subscription whose due period's charge has just been made."""
    state = lifecycle.begin_period(lifecycle.start(monthly(), T0))
    return replace(state, **changes)  # type: ignore[arg-type]


FIRST = begun()
SECOND = begun(attempt=2, first_failed_at=T0, status=SubscriptionStatus.PAST_DUE)
LAST = begun(attempt=4, first_failed_at=T0, status=SubscriptionStatus.PAST_DUE)
PAUSED = begun(status=SubscriptionStatus.PAUSED)

DECLINES = [
    # case, state, policy, declined at, hard, card updated, action, next attempt, status
    (
        "first soft decline: retry a day later",
        FIRST,
        POLICY,
        T0,
        False,
        False,
        DeclineAction.RETRY,
        T0 + DAY,
        SubscriptionStatus.PAST_DUE,
    ),
    (
        "second: the next offset, from the first failure",
        SECOND,
        POLICY,
        T0 + DAY,
        False,
        False,
        DeclineAction.RETRY,
        T0 + 3 * DAY,
        SubscriptionStatus.PAST_DUE,
    ),
    (
        "a retry made early (card updated) uses no slot",
        SECOND,
        POLICY,
        T0 + DAY / 2,
        False,
        False,
        DeclineAction.RETRY,
        T0 + DAY,
        SubscriptionStatus.PAST_DUE,
    ),
    (
        "hard: no retry, waits for a card until the last slot",
        FIRST,
        POLICY,
        T0,
        True,
        False,
        DeclineAction.AWAIT_CARD,
        T0 + 7 * DAY,
        SubscriptionStatus.PAST_DUE,
    ),
    (
        "the card was updated while it flew: retried at once",
        SECOND,
        POLICY,
        T0 + DAY,
        False,
        True,
        DeclineAction.RETRY,
        T0 + DAY,
        SubscriptionStatus.PAST_DUE,
    ),
    (
        "the last slot declined: the final action",
        LAST,
        POLICY,
        T0 + 7 * DAY,
        False,
        False,
        DeclineAction.CANCEL,
        None,
        SubscriptionStatus.CANCELED,
    ),
    (
        "every slot passed while unknown: final action",
        SECOND,
        POLICY,
        T0 + 8 * DAY,
        False,
        False,
        DeclineAction.CANCEL,
        None,
        SubscriptionStatus.CANCELED,
    ),
    (
        "final action pause",
        SECOND,
        PAUSING,
        T0 + DAY,
        False,
        False,
        DeclineAction.PAUSE,
        None,
        SubscriptionStatus.PAUSED,
    ),
    (
        "paused meanwhile: nothing scheduled",
        PAUSED,
        POLICY,
        T0,
        False,
        False,
        DeclineAction.NONE,
        None,
        SubscriptionStatus.PAUSED,
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "policy", "at", "hard", "updated", "action", "next_at", "status"),
    DECLINES,
    ids=[row[0] for row in DECLINES],
)
def test_record_decline(
    case: str,
    state: BillingState,
    policy: DunningPolicy,
    at: datetime,
    hard: bool,
    updated: bool,
    action: DeclineAction,
    next_at: datetime | None,
    status: SubscriptionStatus,
) -> None:
    decline = record_decline(state, policy, at, hard=hard, card_updated=updated)
    assert (decline.action, decline.state.next_charge_at, decline.state.status) == (
        action,
        next_at,
        status,
    )
    if action != DeclineAction.NONE:
        assert decline.state.attempt == state.attempt + 1
        assert decline.state.first_failed_at == (state.first_failed_at or at)


def test_end_dunning_applies_the_final_action() -> None:
    assert end_dunning(SECOND, POLICY).action == DeclineAction.CANCEL
    assert end_dunning(SECOND, PAUSING).state.status == SubscriptionStatus.PAUSED


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        (DeclineAction.CANCEL, NoticeKind.SUBSCRIPTION_CANCELED),
        (DeclineAction.PAUSE, NoticeKind.SUBSCRIPTION_PAUSED),
        (DeclineAction.RETRY, None),
        (DeclineAction.AWAIT_CARD, None),
        (DeclineAction.NONE, None),
    ],
)
def test_the_notice_that_says_dunning_ended(action: DeclineAction, kind: NoticeKind | None) -> None:
    assert final_notice(action) == kind


CAP = [
    ("no declines", [], None),
    ("14 declines", [T0 + n * DAY / 2 for n in range(14)], None),
    (
        "15 declines: until the oldest leaves the window",
        [T0 + n * DAY / 2 for n in range(15)],
        T0 + CARD_WINDOW + timedelta(seconds=1),
    ),
    (
        "16 declines: until the second oldest leaves",
        [T0 + n * DAY / 2 for n in range(16)],
        T0 + DAY / 2 + CARD_WINDOW + timedelta(seconds=1),
    ),
]


@pytest.mark.parametrize(("case", "declines", "until"), CAP, ids=[row[0] for row in CAP])
def test_card_postponed_until(case: str, declines: list[datetime], until: datetime | None) -> None:
    assert card_postponed_until(declines) == until


@pytest.mark.parametrize(
    ("declines", "in_flight", "busy"),
    [
        (0, 14, False),
        (0, 15, True),
        (10, 5, True),
        (10, 4, False),
        (15, 3, False),
        (20, 0, False),
    ],
)
def test_card_busy_only_while_attempts_in_flight_make_up_the_cap(
    declines: int, in_flight: int, busy: bool
) -> None:
    assert card_busy(declines, in_flight) is busy


@pytest.mark.parametrize(
    ("case", "history_behind", "age", "lately", "looks"),
    [
        ("on time", False, timedelta(hours=1), False, False),
        ("older than the shortest gap", False, 2 * DAY, False, True),
        ("PortOne knew more of this subscription", True, timedelta(0), False, True),
        # PortOne answered a lookup of it moments ago (nothing found, so it is sent again):
        # asking again before that send would ask forever (found by the property test)
        ("old, but just looked up", False, 5 * DAY, True, False),
    ],
)
def test_needs_lookup(
    case: str, history_behind: bool, age: timedelta, lately: bool, looks: bool
) -> None:
    why = needs_lookup(POLICY, history_behind, T0, T0 + age, looked_up_lately=lately)
    assert (why is not None) == looks, case
