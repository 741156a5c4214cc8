"""Every PortOne answer maps to exactly one outcome: a table a billing engineer can check."""

from __future__ import annotations

import json

import pytest

from billing.portone.answers import (
    Exchange,
    Found,
    Outcome,
    Transport,
    classify_again,
    classify_find_all,
    classify_find_paid,
)

UID = "sub-abcdefgh1234-1-1"


def body(code: int = 0, message: str | None = None, response: object = None) -> bytes:
    return json.dumps({"code": code, "message": message, "response": response}).encode()


def payment(status: str = "paid", **changes: object) -> dict[str, object]:
    return {
        "imp_uid": "imps_000000000001",
        "merchant_uid": UID,
        "amount": 9900,
        "status": status,
        "fail_reason": None,
        **changes,
    }


CASES = [
    ("approved", Exchange(200, body(response=payment())), Outcome.APPROVED),
    (
        "approved, amount as float",
        Exchange(200, body(response=payment(amount=9900.0))),
        Outcome.APPROVED,
    ),
    (
        "declined",
        Exchange(200, body(response=payment("failed", fail_reason="잔액부족"))),
        Outcome.DECLINED,
    ),
    (
        "refused: unknown customer_uid",
        Exchange(200, body(-1, "등록되지 않은 구매자입니다")),
        Outcome.REFUSED,
    ),
    ("refused with HTTP 400", Exchange(400, body(-1, "name 40자 초과")), Outcome.REFUSED),
    (
        "connect error",
        Exchange(failure=Transport.NOT_SENT, detail="ConnectError"),
        Outcome.TRANSIENT,
    ),
    ("401 after the replay", Exchange(401, b""), Outcome.TRANSIENT),
    ("429", Exchange(429, b"slow down"), Outcome.TRANSIENT),
    ("read timeout", Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"), Outcome.UNKNOWN),
    (
        "reset after send",
        Exchange(failure=Transport.NO_ANSWER, detail="RemoteProtocolError"),
        Outcome.UNKNOWN,
    ),
    ("500", Exchange(500, b"oops"), Outcome.UNKNOWN),
    ("503 with a refusal body", Exchange(503, body(-1, "maintenance")), Outcome.UNKNOWN),
    ("garbage body", Exchange(200, b"<html>gateway</html>"), Outcome.UNKNOWN),
    ("empty body", Exchange(200, b""), Outcome.UNKNOWN),
    ("truncated JSON", Exchange(200, body(response=payment())[:40]), Outcome.UNKNOWN),
    ("JSON list", Exchange(200, b"[1, 2]"), Outcome.UNKNOWN),
    ("code is a string", Exchange(200, b'{"code": "0", "response": {}}'), Outcome.UNKNOWN),
    ("code is a bool", Exchange(200, b'{"code": false, "response": {}}'), Outcome.UNKNOWN),
    ("code 0 without response", Exchange(200, body()), Outcome.UNKNOWN),
    (
        "paid for another merchant_uid",
        Exchange(200, body(response=payment(merchant_uid="x"))),
        Outcome.UNKNOWN,
    ),
    ("paid another amount", Exchange(200, body(response=payment(amount=9901))), Outcome.UNKNOWN),
    (
        "paid a fractional amount",
        Exchange(200, body(response=payment(amount=9900.5))),
        Outcome.UNKNOWN,
    ),
    ("paid without imp_uid", Exchange(200, body(response=payment(imp_uid=None))), Outcome.UNKNOWN),
    ("status ready", Exchange(200, body(response=payment("ready"))), Outcome.UNKNOWN),
    ("status cancelled", Exchange(200, body(response=payment("cancelled"))), Outcome.UNKNOWN),
    ("code 0 with HTTP 404", Exchange(404, body(response=payment())), Outcome.UNKNOWN),
    ("huge body", Exchange(200, b"[" * 100_000), Outcome.UNKNOWN),
    ("invalid UTF-8", Exchange(200, b"\xff\xfe{"), Outcome.UNKNOWN),
]


@pytest.mark.parametrize(("case", "exchange", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classify_again(case: str, exchange: Exchange, expected: Outcome) -> None:
    assert classify_again(exchange, UID, 9900).outcome == expected


def test_already_paid_is_a_refusal_with_its_message_for_the_lookup_that_follows() -> None:
    refusal = Exchange(200, body(-1, "이미 결제완료된 주문입니다"))
    answer = classify_again(refusal, UID, 9900)
    assert (answer.outcome, answer.reason, answer.code) == (
        Outcome.REFUSED,
        "이미 결제완료된 주문입니다",
        -1,
    )


def test_approved_carries_imp_uid_and_decline_carries_the_reason() -> None:
    assert classify_again(CASES[0][1], UID, 9900).imp_uid == "imps_000000000001"
    declined = classify_again(CASES[2][1], UID, 9900)
    assert declined.reason == "잔액부족"


LOOKUPS = [
    ("paid", Exchange(200, body(response=payment())), Found.PAID),
    ("404 nothing paid", Exchange(404, body(-1, "존재하지 않는 결제정보입니다")), Found.NOTHING),
    ("404 without JSON", Exchange(404, b"not found"), Found.ERROR),
    ("500", Exchange(500, b""), Found.ERROR),
    ("timeout", Exchange(failure=Transport.NO_ANSWER), Found.ERROR),
    ("another merchant_uid", Exchange(200, body(response=payment(merchant_uid="x"))), Found.ERROR),
    ("garbage", Exchange(200, b"{"), Found.ERROR),
]


@pytest.mark.parametrize(("case", "exchange", "expected"), LOOKUPS, ids=[c[0] for c in LOOKUPS])
def test_classify_find_paid(case: str, exchange: Exchange, expected: Found) -> None:
    assert classify_find_paid(exchange, UID, 9900).found == expected


def test_find_paid_flags_an_amount_mismatch() -> None:
    found = classify_find_paid(Exchange(200, body(response=payment(amount=1))), UID, 9900)
    assert found.found == Found.PAID and not found.amount_matches


def listing(*payments: dict[str, object]) -> bytes:
    return body(response={"total": len(payments), "previous": 0, "next": 0, "list": list(payments)})


NET_CANCEL = payment(
    "cancelled", paid_at=0, cancelled_at=7, cancel_amount=9900, cancel_reason="망취소"
)
REFUNDED = payment(
    "cancelled", paid_at=5, cancelled_at=9, cancel_amount=9900, cancel_reason="고객 요청"
)
FIND_ALL = [
    (
        "all failed",
        Exchange(200, listing(payment("failed", fail_reason="한도초과", failed_at=5))),
        Found.DECLINED,
        "한도초과",
    ),
    ("none", Exchange(404, body(-1, "없음")), Found.NOTHING, ""),
    ("empty list", Exchange(200, listing()), Found.NOTHING, ""),
    (
        "a paid one",
        Exchange(200, listing(payment("paid"))),
        Found.ERROR,
        "findAll lists a paid attempt that find/paid did not",
    ),
    (
        "left ready: never completed",
        Exchange(200, listing(payment("ready"))),
        Found.DECLINED,
        "PortOne holds it ready: never completed, not paid",
    ),
    (
        "net-cancelled before it was paid",
        Exchange(200, listing(NET_CANCEL)),
        Found.DECLINED,
        "cancelled at PortOne before it was paid (net-cancel): 망취소",
    ),
    (
        "paid, then refunded in the console",
        Exchange(200, listing(REFUNDED)),
        Found.REFUNDED,
        "cancelled at PortOne after it was paid: 고객 요청",
    ),
    (
        "refunded wins over an older decline",
        Exchange(200, listing(payment("failed", failed_at=1), REFUNDED)),
        Found.REFUNDED,
        "cancelled at PortOne after it was paid: 고객 요청",
    ),
    (
        "a status nobody knows",
        Exchange(200, listing(payment("vbank_issued"))),
        Found.ERROR,
        "attempts with status vbank_issued",
    ),
    ("no list", Exchange(200, body(response={"total": 1})), Found.ERROR, "findAll without a list"),
]


@pytest.mark.parametrize(
    ("case", "exchange", "expected", "reason"), FIND_ALL, ids=[c[0] for c in FIND_ALL]
)
def test_classify_find_all(case: str, exchange: Exchange, expected: Found, reason: str) -> None:
    lookup = classify_find_all(exchange, UID, 9900)
    assert (lookup.found, lookup.reason) == (expected, reason)


def test_a_console_refund_carries_the_refunded_amount() -> None:
    partial = {**REFUNDED, "cancel_amount": 4000}
    assert classify_find_all(Exchange(200, listing(REFUNDED)), UID, 9900).refunded == 9900
    assert classify_find_all(Exchange(200, listing(partial)), UID, 9900).refunded == 4000


RECEIPT = "https://iniweb.inicis.com/receipt/imps_000000000001"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (RECEIPT, RECEIPT),
        ("http://admin.kcp.co.kr/receipt?no=1", "http://admin.kcp.co.kr/receipt?no=1"),
        (None, None),
        ("", None),
        ("javascript:alert(1)", None),  # shown as a link in the console and in notices
        ("https://x/\nSet-Cookie: a=b", None),
        ("https://x/" + "a" * 3000, None),
        (12345, None),
    ],
)
def test_a_paid_answer_keeps_its_receipt_url_when_it_is_a_web_address(
    given: object, kept: str | None
) -> None:
    answer = classify_again(Exchange(200, body(response=payment(receipt_url=given))), UID, 9900)
    assert answer.outcome == Outcome.APPROVED
    assert answer.receipt_url == kept
    found = classify_find_paid(Exchange(200, body(response=payment(receipt_url=given))), UID, 9900)
    assert (found.found, found.receipt_url) == (Found.PAID, kept)


def test_a_console_refund_found_by_find_all_keeps_the_receipt() -> None:
    refunded = payment("cancelled", paid_at=100, cancel_amount=9900, receipt_url=RECEIPT)
    found = classify_find_all(Exchange(200, body(response={"list": [refunded]})), UID, 9900)
    assert (found.found, found.receipt_url) == (Found.REFUNDED, RECEIPT)
