"""The decisions of taking a customer over from PortOne's hosted scheduler, and the reading of
PortOne's schedule answers (pure: no database, no HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.domain.takeover import HostedSchedule, Release, StillWaiting, refusal, release
from billing.portone.answers import Exchange, Transport
from billing.portone.schedules import SchedulesUnreadable, schedules_of, unschedule_all
from tests.unit.plans_factory import calendar, monthly

JAN = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
FEB = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
MAR = int(datetime(2027, 3, 1, tzinfo=UTC).timestamp())


def schedule(uid: str, at: int, status: str = "scheduled", paid: str = "") -> HostedSchedule:
    return HostedSchedule(uid, at, 9900, status, paid)


HELD = frozenset({"p-feb", "p-mar"})


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(  # revoked before either fired: ours from February
            [schedule("p-feb", FEB, "revoked"), schedule("p-mar", MAR, "revoked")],
            Release(datetime.fromtimestamp(FEB, UTC), ("p-feb", "p-mar"), (), ()),
            id="all-revoked",
        ),
        pytest.param(  # February fired at PortOne between the hold and the unschedule
            [schedule("p-feb", FEB, "executed", "paid"), schedule("p-mar", MAR, "revoked")],
            Release(datetime.fromtimestamp(MAR, UTC), ("p-mar",), ("p-feb",), ()),
            id="one-fired-paid",
        ),
        pytest.param(  # declined at PortOne: reported, and its period is not charged here
            [schedule("p-feb", FEB, "executed", "failed"), schedule("p-mar", MAR, "revoked")],
            Release(datetime.fromtimestamp(MAR, UTC), ("p-mar",), (), ("p-feb",)),
            id="one-fired-declined",
        ),
        pytest.param(  # both fired: the period after March is the first one here
            [
                schedule("p-feb", FEB, "executed", "paid"),
                schedule("p-mar", MAR, "executed", "paid"),
            ],
            Release(datetime(2027, 4, 1, tzinfo=UTC), (), ("p-feb", "p-mar"), ()),
            id="all-fired",
        ),
        pytest.param(  # the unschedule did not take: stay held, charge nothing here
            [schedule("p-feb", FEB, "revoked"), schedule("p-mar", MAR)],
            StillWaiting(("p-mar",)),
            id="still-waiting",
        ),
        pytest.param(  # a schedule added at PortOne after the hold, still waiting: held
            [schedule("p-feb", FEB, "revoked"), schedule("p-x", MAR)],
            StillWaiting(("p-x",)),
            id="added-later-waiting",
        ),
        pytest.param(  # an old schedule revoked long ago is not resurrected
            [
                schedule("p-old", JAN, "revoked"),
                schedule("p-feb", FEB, "revoked"),
                schedule("p-mar", MAR, "revoked"),
            ],
            Release(datetime.fromtimestamp(FEB, UTC), ("p-feb", "p-mar"), (), ()),
            id="old-revoked-ignored",
        ),
    ],
)
def test_release_decides_from_what_portone_holds_now(
    now: list[HostedSchedule], expected: Release | StillWaiting
) -> None:
    plan = monthly(zone=UTC)
    assert release(HELD, now, plan) == expected


def test_refusal_names_what_cannot_be_taken_over() -> None:
    plan = monthly()
    assert refusal([schedule("p-1", FEB)], plan) is None
    nothing = refusal([schedule("p-0", JAN, "executed", "paid")], plan)
    assert nothing is not None and "no waiting schedule" in nothing
    other_price = refusal([HostedSchedule("p-1", FEB, 12000, "scheduled", "")], plan)
    assert other_price is not None and "12000 KRW" in other_price and "9900 KRW" in other_price


def test_a_calendar_plan_releases_on_its_next_fire_after_the_last_fired_schedule() -> None:
    plan = calendar("0 0 1 * *", amount=9900, zone=UTC)
    now = [schedule("p-feb", FEB, "executed", "paid"), schedule("p-mar", MAR, "executed", "paid")]
    decision = release(HELD, now, plan)
    assert isinstance(decision, Release)
    assert decision.first_charge_at == datetime(2027, 4, 1, tzinfo=UTC)


# -- reading PortOne's answers ------------------------------------------------------------------


class Wire:
    """Answers calls from a list of (status, body) and records what was asked."""

    def __init__(self, *answers: tuple[int, Any] | Exchange) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def call(self, method: str, path: str, **options: Any) -> Exchange:
        self.calls.append((method, path, options))
        answer = self.answers.pop(0)
        if isinstance(answer, Exchange):
            return answer
        status, body = answer
        return Exchange(status, json.dumps(body).encode())


def item(uid: str, at: int, status: str = "scheduled", paid: str | None = None) -> dict[str, Any]:
    return {
        "merchant_uid": uid,
        "schedule_at": at,
        "amount": 9900,
        "schedule_status": status,
        "payment_status": paid,
        "customer_uid": "c1",
    }


def test_schedules_are_read_page_by_page_until_an_empty_page() -> None:
    wire = Wire(
        (200, {"code": 0, "message": None, "response": [item("b", MAR), item("a", FEB)]}),
        (200, {"code": 0, "message": None, "response": [item("c", MAR + 1)]}),
        (200, {"code": 0, "message": None, "response": []}),
    )
    found = schedules_of(wire, "c/1", 100, 200)
    assert [s.merchant_uid for s in found] == ["a", "b", "c"]
    method, path, options = wire.calls[0]
    assert (method, path) == ("GET", "/subscribe/payments/schedule/customers/c%2F1")
    assert options["params"] == {"from": 100, "to": 200, "page": 1}
    assert [call[2]["params"]["page"] for call in wire.calls] == [1, 2, 3]


def test_a_long_span_is_read_in_windows_of_three_months() -> None:
    empty = (200, {"code": 0, "message": None, "response": []})
    wire = Wire(empty, empty, empty)
    day = 86400
    assert schedules_of(wire, "c1", 0, 200 * day) == []
    windows = [(c[2]["params"]["from"], c[2]["params"]["to"]) for c in wire.calls]
    assert windows == [(0, 90 * day), (90 * day, 180 * day), (180 * day, 200 * day)]


def test_a_page_that_repeats_the_last_one_ends_the_listing() -> None:
    page = {"code": 0, "message": None, "response": [item("a", FEB)]}
    wire = Wire((200, page), (200, page))
    assert [s.merchant_uid for s in schedules_of(wire, "c1", 0, 1)] == ["a"]
    assert len(wire.calls) == 2


def test_a_paged_listing_stops_at_next_zero() -> None:
    paged = {"total": 1, "previous": 0, "next": 0, "list": [item("a", FEB, "revoked")]}
    wire = Wire((200, {"code": 0, "message": None, "response": paged}))
    [found] = schedules_of(wire, "c1", 0, 1)
    assert (found.status, found.payment_status) == ("revoked", "")
    assert len(wire.calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"),
        (500, {"code": -1, "message": "boom", "response": None}),
        (200, {"code": 0, "message": None, "response": {"unexpected": True}}),
        (200, {"code": 0, "message": None, "response": [{"merchant_uid": "a"}]}),
        (200, {"code": 0, "message": None, "response": [{**item("a", FEB), "amount": 9.5}]}),
        (401, {"code": -1, "message": "unauthorized", "response": None}),
    ],
    ids=["no-answer", "5xx", "shape", "no-time", "fraction", "401"],
)
def test_an_unreadable_answer_raises_and_decides_nothing(answer: Any) -> None:
    with pytest.raises(SchedulesUnreadable):
        schedules_of(Wire(answer), "c1", 0, 1)


def test_nothing_found_is_an_empty_listing_not_an_error() -> None:
    wire = Wire((200, {"code": 1, "message": "결제예약 정보가 없습니다", "response": None}))
    assert schedules_of(wire, "c1", 0, 1) == []


def test_unschedule_revokes_by_customer_and_nothing_left_is_not_an_error() -> None:
    revoked = {"code": 0, "message": None, "response": [item("a", FEB, "revoked")]}
    nothing = {"code": 1, "message": "취소할 예약결제 기록이 존재하지 않습니다.", "response": None}
    wire = Wire((200, revoked), (200, nothing))
    assert unschedule_all(wire, "c1") == ["a"]
    assert unschedule_all(wire, "c1") == []
    assert wire.calls[0][:2] == ("POST", "/subscribe/payments/unschedule")
    assert wire.calls[0][2] == {"json": {"customer_uid": "c1"}}
    with pytest.raises(SchedulesUnreadable):
        unschedule_all(Wire(Exchange(failure=Transport.NO_ANSWER, detail="x")), "c1")
