"""PortOne's hosted scheduler in the bundled sandbox, over real HTTP: every answer validates
against PortOne's OpenAPI document; due schedules fire on the sandbox clock through
``again``'s path, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from billing.sandbox import SandboxConfig, SandboxServer
from tests.integration.test_sandbox_http import Receiver, Schemas, find_spec, get_token

SCHEDULE = "/subscribe/payments/schedule"
UNSCHEDULE = "/subscribe/payments/unschedule"
CLOCK = "/__sandbox__/clock"
BASE = 4_000_000_000  # the sandbox clock is set here (2096): schedules are hours after it
HOUR = 3600
CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2099-12", "birth": "900101"}


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas(find_spec())


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    """PortOne's default: only registered customers have a key."""
    sandbox = SandboxServer(SandboxConfig(seed=1)).start()
    sandbox.set_clock(now=BASE)
    sandbox.register_customer("c1", customer_name="홍길동", customer_email="hong@example.com")
    yield sandbox
    sandbox.stop()


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        http.headers["Authorization"] = f"Bearer {get_token(http)}"
        yield http


def entry(merchant_uid: str, hours: float = 1, **extra: object) -> dict[str, object]:
    at = BASE + int(hours * HOUR)
    return {
        "merchant_uid": merchant_uid,
        "schedule_at": at,
        "amount": 9900,
        "name": "월간",
        **extra,
    }


def check_list(schemas: Schemas, answer: httpx.Response) -> list[dict[str, Any]]:
    """A ``ScheduleResponse``: code 0 and an array of complete ``ScheduleResultAnnotation``s."""
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    schemas.check("ScheduleResponse", body)
    assert body["code"] == 0 and body["message"] is None, body
    listed: list[dict[str, Any]] = body["response"]
    assert isinstance(listed, list)
    assert all(set(one) == schemas.fields_of("ScheduleResultAnnotation") for one in listed)
    return listed


def check_one(schemas: Schemas, answer: httpx.Response) -> dict[str, Any]:
    one = schemas.check_ok(answer, "SingleScheduleResponse")
    assert set(one) == schemas.fields_of("ScheduleResultAnnotation")
    return one


def schedule(client: httpx.Client, *entries: dict[str, object], uid: str = "c1") -> httpx.Response:
    return client.post(SCHEDULE, json={"customer_uid": uid, "schedules": list(entries)})


def get_schedule(schemas: Schemas, client: httpx.Client, merchant_uid: str) -> dict[str, Any]:
    return check_one(schemas, client.get(f"{SCHEDULE}/{merchant_uid}"))


def advance(client: httpx.Client, seconds: int) -> dict[str, Any]:
    answer = client.post(CLOCK, json={"advance": seconds})
    assert answer.status_code == 200, answer.text
    moved: dict[str, Any] = answer.json()
    return moved


def merchant_uids(server: SandboxServer) -> list[str]:
    return [str(payment["merchant_uid"]) for payment in server.ledger()]


# -- scheduling and lookups -------------------------------------------------------------------


def test_schedules_and_their_lookups_have_the_documents_shapes(
    client: httpx.Client, schemas: Schemas
) -> None:
    added = check_list(schemas, schedule(client, entry("s1"), entry("s2", 2, buyer_name="김")))
    assert [(s["merchant_uid"], s["schedule_status"]) for s in added] == [
        ("s1", "scheduled"),
        ("s2", "scheduled"),
    ]
    first = added[0]
    assert (first["imp_uid"], first["payment_status"], first["executed_at"]) == (None, None, 0)
    assert (first["customer_uid"], first["schedule_at"], first["amount"]) == (
        "c1",
        BASE + HOUR,
        9900,
    )
    # buyer_* left out: the key's customer_* (PortOne's document); given: as given
    assert (first["buyer_name"], first["buyer_email"]) == ("홍길동", "hong@example.com")
    assert added[1]["buyer_name"] == "김"
    assert get_schedule(schemas, client, "s1") == first
    window = {"schedule_from": BASE, "schedule_to": BASE + 3 * HOUR}
    ranged = check_list(schemas, client.get(SCHEDULE, params=window))
    assert [s["merchant_uid"] for s in ranged] == ["s2", "s1"]  # newest first
    span = {"from": BASE, "to": BASE + 3 * HOUR}
    for path in (f"{SCHEDULE}/customers/c1", "/subscribe/customers/c1/schedules"):
        assert check_list(schemas, client.get(path, params=span)) == ranged


def test_a_form_body_schedules_too(client: httpx.Client, schemas: Schemas) -> None:
    form = {
        "customer_uid": "c1",
        "schedules[0][merchant_uid]": "f1",
        "schedules[0][schedule_at]": str(BASE + HOUR),
        "schedules[0][amount]": "9900",
        "schedules[0][name]": "월간",
    }
    added = check_list(schemas, client.post(SCHEDULE, data=form))
    assert [(s["merchant_uid"], s["amount"]) for s in added] == [("f1", 9900)]
    check_list(schemas, schedule(client, entry("f2"), entry("f3")))
    revoke = {"customer_uid": "c1", "merchant_uid[]": ["f1", "f3"]}  # repeated: both
    revoked = check_list(schemas, client.post(UNSCHEDULE, data=revoke))
    assert [s["merchant_uid"] for s in revoked] == ["f1", "f3"]
    assert get_schedule(schemas, client, "f2")["schedule_status"] == "scheduled"


# -- firing -------------------------------------------------------------------------------------


def test_a_schedule_fires_when_the_clock_passes_it_as_an_again_payment(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    check_list(schemas, schedule(client, entry("s1", 1), entry("s2", 5)))
    assert advance(client, HOUR - 1)["fired"] == []
    assert server.ledger() == []
    moved = advance(client, 1)
    assert moved == {"ok": True, "now": BASE + HOUR, "fired": ["s1"]}
    executed = get_schedule(schemas, client, "s1")
    assert (executed["schedule_status"], executed["payment_status"]) == ("executed", "paid")
    assert executed["executed_at"] == BASE + HOUR
    payment = schemas.check_ok(client.get(f"/payments/{executed['imp_uid']}"), "PaymentResponse")
    assert (payment["merchant_uid"], payment["customer_uid"], payment["amount"]) == (
        "s1",
        "c1",
        9900,
    )
    assert payment["status"] == "paid" and payment["paid_at"] == BASE + HOUR
    status = {"from": BASE, "to": BASE + 2 * HOUR}
    paid = client.get("/payments/status/paid", params=status).json()["response"]
    schemas.check("PagedPaymentAnnotation", paid)
    assert [p["merchant_uid"] for p in paid["list"]] == ["s1"]
    assert get_schedule(schemas, client, "s2")["schedule_status"] == "scheduled"
    # a refund since: the schedule's payment_status follows the payment (the document's list)
    refund = client.post("/payments/cancel", json={"imp_uid": executed["imp_uid"], "reason": "x"})
    schemas.check_ok(refund, "PaymentResponse")
    assert get_schedule(schemas, client, "s1")["payment_status"] == "cancelled"
    server.set_clock(advance=4 * HOUR)  # the in-process control fires too
    assert get_schedule(schemas, client, "s2")["payment_status"] == "paid"
    assert merchant_uids(server) == ["s1", "s2"]


def test_due_schedules_fire_once_oldest_first_under_concurrent_clock_moves(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    entries = [entry(f"s{n:02d}", hours=(37 * n % 20) / 4 + 0.1) for n in range(20)]
    check_list(schemas, schedule(client, *entries))

    def move(step: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as own:
            own.post(CLOCK, json={"advance": 60 * (step % 3)})
            own.get(f"{SCHEDULE}/s00", headers=dict(client.headers))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(move, range(300)))
    server.set_clock(advance=6 * HOUR)
    by_time = sorted(entries, key=lambda e: int(str(e["schedule_at"])))
    assert merchant_uids(server) == [e["merchant_uid"] for e in by_time]  # once each, in order
    window = {"schedule_from": BASE, "schedule_to": BASE + 6 * HOUR, "limit": 100}
    listed = check_list(schemas, client.get(SCHEDULE, params=window))
    assert {s["schedule_status"] for s in listed} == {"executed"} and len(listed) == 20


def test_unschedule_before_the_time_prevents_the_charge(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    check_list(schemas, schedule(client, entry("s1"), entry("s2"), entry("s3")))
    one = check_list(
        schemas, client.post(UNSCHEDULE, json={"customer_uid": "c1", "merchant_uid": ["s1"]})
    )
    assert [(s["merchant_uid"], s["schedule_status"]) for s in one] == [("s1", "revoked")]
    assert one[0]["revoked_at"] == BASE
    rest = check_list(schemas, client.post(UNSCHEDULE, json={"customer_uid": "c1"}))
    assert [s["merchant_uid"] for s in rest] == ["s2", "s3"]  # none given: all still scheduled
    nothing = client.post(UNSCHEDULE, json={"customer_uid": "c1"})
    assert nothing.status_code == 200
    schemas.check("ResponseAnnotation", nothing.json())
    assert nothing.json()["code"] == 1 and nothing.json()["response"] is None
    advance(client, 2 * HOUR)
    assert server.ledger() == []
    assert get_schedule(schemas, client, "s1")["schedule_status"] == "revoked"


def test_a_decline_on_fire_is_a_failed_payment_and_a_failed_schedule_with_notices(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    receiver = Receiver()
    server.script("c1", ["decline:잔액부족", "approve"])
    notice = {"notice_url": receiver.url}
    check_list(schemas, schedule(client, entry("s1", 1, **notice), entry("s2", 2, **notice)))
    advance(client, 2 * HOUR)
    failed = get_schedule(schemas, client, "s1")
    assert (failed["schedule_status"], failed["payment_status"]) == ("executed", "failed")
    assert failed["fail_reason"] == "잔액부족"
    payment = schemas.check_ok(client.get(f"/payments/{failed['imp_uid']}"), "PaymentResponse")
    assert (payment["status"], payment["fail_reason"]) == ("failed", "잔액부족")
    assert get_schedule(schemas, client, "s2")["payment_status"] == "paid"
    notices = receiver.wait_for(2)
    assert sorted((n["merchant_uid"], n["status"]) for n in notices) == [
        ("s1", "failed"),
        ("s2", "paid"),
    ]


def test_a_key_deleted_before_the_time_fails_the_schedule_without_a_payment(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    check_list(schemas, schedule(client, entry("s1")))
    schemas.check_ok(client.delete("/subscribe/customers/c1"), "CustomerResponse")
    advance(client, HOUR)
    failed = get_schedule(schemas, client, "s1")
    assert (failed["payment_status"], failed["imp_uid"]) == ("failed", None)
    assert "등록되지 않은 구매자입니다" in failed["fail_reason"]
    assert server.ledger() == []


def test_a_schedule_fires_in_real_time_without_any_call() -> None:
    """Left on real time, the server's own once-a-second tick fires what falls due."""
    with (
        SandboxServer(SandboxConfig(auto_register=True)) as server,
        httpx.Client(base_url=server.url, timeout=10.0) as client,
    ):
        client.headers["Authorization"] = f"Bearer {get_token(client)}"
        soon = {"merchant_uid": "rt1", "schedule_at": server.now() + 1, "amount": 100}
        assert schedule(client, soon).json()["code"] == 0
        deadline = time.monotonic() + 10
        while not server.ledger() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert merchant_uids(server) == ["rt1"]


# -- customers ----------------------------------------------------------------------------------


def test_an_unknown_customer_is_refused_and_card_fields_issue_its_key(
    client: httpx.Client, schemas: Schemas, server: SandboxServer
) -> None:
    refused = schemas.check_error(schedule(client, entry("s1"), uid="nobody"), 200)
    assert "등록되지 않은 구매자입니다" in refused["message"]
    body = {"customer_uid": "new1", **CARD, "schedules": [entry("s1")]}
    added = check_list(schemas, client.post(SCHEDULE, json=body))
    assert added[0]["customer_uid"] == "new1"
    key = schemas.check_ok(client.get("/subscribe/customers/new1"), "CustomerResponse")
    assert key["card_number"] == "411111******1111"
    advance(client, HOUR)
    assert get_schedule(schemas, client, "s1")["payment_status"] == "paid"


# -- bad parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"customer_uid": "c1"},
        {"customer_uid": "c1", "schedules": []},
        {"schedules": [entry("s1")]},
        {"customer_uid": "c1", "schedules": [{"merchant_uid": "s1", "amount": 9900}]},
        {"customer_uid": "c1", "schedules": [entry("s1", amount=0)]},
        {"customer_uid": "c1", "schedules": [entry("s" * 41)]},
        {"customer_uid": "c1", "schedules": [entry("s1", name="가" * 41)]},
        {"customer_uid": "c1", "schedules": [entry("s1", hours=-1)]},  # in the past
        {"customer_uid": "c1", "schedules": [entry("s1"), entry("s1", 2)]},  # twice
        {"customer_uid": "c1", **CARD, "expiry": "2001-01", "schedules": [entry("s1")]},
    ],
)
def test_bad_schedules_are_code_minus_1_and_schedule_nothing(
    client: httpx.Client, schemas: Schemas, server: SandboxServer, body: dict[str, object]
) -> None:
    schemas.check_error(client.post(SCHEDULE, json=body), 200)  # the document lists 200 and 401
    window = {"schedule_from": BASE - HOUR, "schedule_to": BASE + 3 * HOUR}
    assert check_list(schemas, client.get(SCHEDULE, params=window)) == []


def test_a_merchant_uid_is_scheduled_once(client: httpx.Client, schemas: Schemas) -> None:
    check_list(schemas, schedule(client, entry("s1")))
    refused = schemas.check_error(schedule(client, entry("s1", 3)), 200)
    assert "s1" in refused["message"]
    assert get_schedule(schemas, client, "s1")["schedule_at"] == BASE + HOUR


@pytest.mark.parametrize(
    "query",
    [
        {"schedule_from": BASE},
        {"schedule_to": BASE},
        {"schedule_from": BASE, "schedule_to": BASE},
        {"schedule_from": BASE, "schedule_to": BASE + 93 * 86400},  # over 3 months
        {"schedule_from": "x", "schedule_to": BASE + HOUR},
        {"schedule_from": BASE, "schedule_to": BASE + HOUR, "schedule_status": "paid"},
        {"schedule_from": BASE, "schedule_to": BASE + HOUR, "limit": 0},
        {"schedule_from": BASE, "schedule_to": BASE + HOUR, "page": 0},
        {"schedule_from": BASE, "schedule_to": BASE + HOUR, "sorting": "-paid"},
    ],
)
def test_bad_lookups_are_400(
    client: httpx.Client, schemas: Schemas, query: dict[str, object]
) -> None:
    schemas.check_error(client.get(SCHEDULE, params=query), 400)  # the document lists a 400


def test_bad_customer_lookups_and_unknown_schedules(client: httpx.Client, schemas: Schemas) -> None:
    schemas.check_error(client.get(f"{SCHEDULE}/customers/c1", params={"from": BASE}), 400)
    bad = {"from": BASE, "to": BASE + HOUR, "schedule-status": "x"}
    schemas.check_error(client.get(f"{SCHEDULE}/customers/c1", params=bad), 400)
    schemas.check_error(client.get(f"{SCHEDULE}/nope"), 404)
    schemas.check_error(client.post(UNSCHEDULE, json={}), 200)
    schemas.check_error(
        client.post(UNSCHEDULE, json={"customer_uid": "c1", "merchant_uid": 5}), 200
    )


def test_lookups_need_a_token(server: SandboxServer, schemas: Schemas) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        schemas.check_error(anonymous.post(SCHEDULE, json={"customer_uid": "c1"}), 401)
        schemas.check_error(anonymous.get(f"{SCHEDULE}/s1"), 401)


# -- paging and filters -------------------------------------------------------------------------


def test_paging_by_time_and_status(client: httpx.Client, schemas: Schemas) -> None:
    check_list(schemas, schedule(client, *(entry(f"s{n}", n) for n in range(1, 6))))
    advance(client, 2 * HOUR)  # s1 and s2 executed

    def uids(**query: object) -> list[str]:
        window = {"schedule_from": BASE + HOUR, "schedule_to": BASE + 5 * HOUR, **query}
        return [s["merchant_uid"] for s in check_list(schemas, client.get(SCHEDULE, params=window))]

    assert uids() == ["s4", "s3", "s2", "s1"]  # from <= schedule_at < to, newest first
    assert [uids(limit=3, page=p) for p in (1, 2, 3)] == [["s4", "s3", "s2"], ["s1"], []]
    assert uids(sorting="scheduled", limit=2, page=2) == ["s3", "s4"]
    assert uids(schedule_status="executed") == ["s2", "s1"]
    assert uids(schedule_status="scheduled") == ["s4", "s3"]
    path = f"{SCHEDULE}/customers/c1"
    span = {"from": BASE, "to": BASE + 6 * HOUR, "schedule-status": "scheduled"}
    listed = check_list(schemas, client.get(path, params=span))
    assert [s["merchant_uid"] for s in listed] == ["s5", "s4", "s3"]
    other = {"from": BASE, "to": BASE + 6 * HOUR}
    assert check_list(schemas, client.get(f"{SCHEDULE}/customers/c2", params=other)) == []


# -- the clock control --------------------------------------------------------------------------


def test_the_clock_control(client: httpx.Client, server: SandboxServer) -> None:
    assert client.get(CLOCK).json()["now"] == BASE
    assert client.post(CLOCK, json={"now": BASE + 10}).json()["now"] == BASE + 10
    for bad in (
        {"now": BASE},
        {"advance": -1},
        {},
        {"now": BASE + 20, "advance": 1},
        {"advance": "x"},
    ):
        answer = client.post(CLOCK, json=bad)
        assert answer.status_code == 400 and answer.json()["code"] == -1, bad
    assert server.now() == BASE + 10
    server.reset()
    assert abs(server.now() - time.time()) < 60  # back to real time
