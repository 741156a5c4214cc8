"""The charge state machine, transition by transition: (state, input, expected step).

Pure: no database, no clock. The jitter is pinned at 0 (the shortest wait of each backoff).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.domain.answers import ChargeAnswer, Found, Lookup, Outcome
from billing.domain.charges import (
    ChargeState,
    ChargeStatus,
    Fail,
    Ignore,
    LookUp,
    Resend,
    Settle,
    Step,
    Timing,
    Void,
    after_answer,
    after_lookup,
    is_stuck,
    looked_up_lately,
    voided,
)

WALL = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=300)
TIMING = Timing(WALL, WINDOW, jitter=0.0)
SENT_JUST_NOW = WALL - timedelta(seconds=10)
SENT_LONG_AGO = WALL - timedelta(seconds=301)

PROCESSING = ChargeState(ChargeStatus.PROCESSING, sends=1, sent_at=SENT_JUST_NOW)
SECOND_SEND = ChargeState(ChargeStatus.PROCESSING, sends=2, sent_at=SENT_JUST_NOW)
UNKNOWN = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_JUST_NOW)
UNKNOWN_OLD = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_LONG_AGO)
NEVER_SENT = ChargeState(ChargeStatus.UNKNOWN, sends=0, sent_at=None)  # looked up first
REFUSED = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_JUST_NOW, refusal="이미 결제")
PAUSED_OLD = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_LONG_AGO, stopped="paused")
LOOKED_UP_9 = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_LONG_AGO, lookups=9)

APPROVED = ChargeAnswer(Outcome.APPROVED, imp_uid="imps_1")
DECLINED = ChargeAnswer(Outcome.DECLINED, "잔액부족")
REFUSAL = ChargeAnswer(Outcome.REFUSED, "이미 결제완료된 주문입니다")
TRANSIENT = ChargeAnswer(Outcome.TRANSIENT, "not sent: ConnectError")
NO_ANSWER = ChargeAnswer(Outcome.UNKNOWN, "no answer: ReadTimeout")

ANSWERS: list[tuple[str, ChargeState, ChargeAnswer, int, Step]] = [
    ("approved", PROCESSING, APPROVED, 1, Settle("imps_1")),
    ("approved after the sweep took it over: still paid", UNKNOWN, APPROVED, 1, Settle("imps_1")),
    ("approved for an older send: still paid", SECOND_SEND, APPROVED, 1, Settle("imps_1")),
    ("declined", PROCESSING, DECLINED, 1, Fail("잔액부족")),
    (
        "refused: looked up at once, the refusal kept",
        PROCESSING,
        REFUSAL,
        1,
        LookUp(0.0, refusal="이미 결제완료된 주문입니다"),
    ),
    ("not sent: sent again after a backoff", PROCESSING, TRANSIENT, 1, Resend(1.0)),
    (
        "not sent, third time: a longer backoff",
        ChargeState(ChargeStatus.PROCESSING, sends=3),
        TRANSIENT,
        3,
        Resend(4.0),
    ),
    ("no answer: looked up in two seconds", PROCESSING, NO_ANSWER, 1, LookUp(2.0)),
    (
        "declined after the sweep took it over",
        UNKNOWN,
        DECLINED,
        1,
        Ignore("the sweep took it over: reconciliation decides"),
    ),
    (
        "an older send's decline",
        SECOND_SEND,
        DECLINED,
        1,
        Ignore("the sweep took it over: reconciliation decides"),
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "answer", "send", "expected"), ANSWERS, ids=[row[0] for row in ANSWERS]
)
def test_after_answer(
    case: str, state: ChargeState, answer: ChargeAnswer, send: int, expected: Step
) -> None:
    assert after_answer(state, answer, send, TIMING) == expected


PAID = Lookup(Found.PAID, "imps_1")
REFUNDED = Lookup(Found.REFUNDED, "imps_1", "cancelled at PortOne after it was paid", True, 9900)
FOUND_DECLINED = Lookup(Found.DECLINED, "imps_2", "한도초과")
NET_CANCEL = Lookup(Found.DECLINED, "imps_3", "cancelled at PortOne before it was paid")
NOTHING = Lookup(Found.NOTHING)
ERROR = Lookup(Found.ERROR, reason="HTTP 503")

LOOKUPS: list[tuple[str, ChargeState, Lookup, Step]] = [
    ("paid", UNKNOWN, PAID, Settle("imps_1")),
    ("paid, whatever the row became", ChargeState(ChargeStatus.FAILED), PAID, Settle("imps_1")),
    ("paid, though never sent by us (a restore)", NEVER_SENT, PAID, Settle("imps_1")),
    (
        "refunded in the console",
        UNKNOWN,
        REFUNDED,
        Settle("imps_1", 9900, "cancelled at PortOne after it was paid"),
    ),
    ("declined", UNKNOWN, FOUND_DECLINED, Fail("한도초과")),
    (
        "net-cancelled: a decline",
        UNKNOWN,
        NET_CANCEL,
        Fail("cancelled at PortOne before it was paid"),
    ),
    (
        "a refusal, nothing at PortOne: a decline with the refusal's reason",
        REFUSED,
        NOTHING,
        Fail("이미 결제"),
    ),
    ("nothing inside the window: asked again before it closes", UNKNOWN, NOTHING, LookUp(15.0)),
    (
        "nothing, the window closing in 5 s",
        ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=WALL - timedelta(seconds=295)),
        NOTHING,
        LookUp(5.0),
    ),
    ("nothing after the window: sent again", UNKNOWN_OLD, NOTHING, Resend()),
    ("nothing, never sent: sent now", NEVER_SENT, NOTHING, Resend()),
    (
        "nothing after the window, subscription paused: voided",
        PAUSED_OLD,
        NOTHING,
        Void("voided: paused"),
    ),
    ("the lookup failed: backoff from the first try", UNKNOWN, ERROR, LookUp(1.0)),
    ("the lookup failed a tenth time: capped backoff", LOOKED_UP_9, ERROR, LookUp(300.0)),
    (
        "a decline found for a charge settled meanwhile",
        ChargeState(ChargeStatus.PAID),
        FOUND_DECLINED,
        Ignore("settled or sent again meanwhile"),
    ),
    (
        "nothing found for a charge pending again",
        ChargeState(ChargeStatus.PENDING),
        NOTHING,
        Ignore("settled or sent again meanwhile"),
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "lookup", "expected"), LOOKUPS, ids=[row[0] for row in LOOKUPS]
)
def test_after_lookup(case: str, state: ChargeState, lookup: Lookup, expected: Step) -> None:
    assert after_lookup(state, lookup, TIMING) == expected


def test_failed_lookups_never_come_sooner_than_the_floor_nor_later_than_the_cap() -> None:
    waits = []
    for lookups in range(20):
        state = ChargeState(ChargeStatus.UNKNOWN, sends=1, sent_at=SENT_LONG_AGO, lookups=lookups)
        for jitter in (0.0, 0.999):
            step = after_lookup(state, ERROR, Timing(WALL, WINDOW, jitter))
            assert isinstance(step, LookUp)
            waits.append(step.after)
    assert min(waits) >= 1.0 and max(waits) <= 600.0


STUCK = [
    (
        "processing, silent past the window",
        ChargeState(ChargeStatus.PROCESSING, sends=1, updated_at=WALL - WINDOW),
        True,
    ),
    (
        "processing, recent",
        ChargeState(ChargeStatus.PROCESSING, sends=1, updated_at=WALL - timedelta(seconds=299)),
        False,
    ),
    ("unknown, old", ChargeState(ChargeStatus.UNKNOWN, updated_at=WALL - 2 * WINDOW), False),
    ("pending, old", ChargeState(ChargeStatus.PENDING, updated_at=WALL - 2 * WINDOW), False),
]


@pytest.mark.parametrize(("case", "state", "expected"), STUCK, ids=[row[0] for row in STUCK])
def test_is_stuck(case: str, state: ChargeState, expected: bool) -> None:
    assert is_stuck(state, TIMING) is expected


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        (None, None),
        ("canceled", Void("voided: canceled")),
        ("paused", Void("voided: paused")),
    ],
)
def test_a_charge_about_to_be_sent_is_voided_when_its_subscription_stopped(
    stopped: str | None, expected: Void | None
) -> None:
    assert voided(ChargeState(ChargeStatus.PENDING, stopped=stopped)) == expected


@pytest.mark.parametrize(
    ("looked_up_at", "expected"),
    [
        (None, False),
        (WALL - timedelta(seconds=5), True),
        (WALL - WINDOW, False),  # a window old: a row restored from a backup is looked up again
    ],
)
def test_looked_up_lately(looked_up_at: datetime | None, expected: bool) -> None:
    assert looked_up_lately(looked_up_at, TIMING) is expected
