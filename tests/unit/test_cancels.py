"""What PortOne's answers to a refund mean: ``POST /payments/cancel`` and the lookup of the
payment afterwards (its cancel history), and what reconciliation does with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.domain.refunds import (
    Applied,
    CancelAnswer,
    CancelOutcome,
    CancelRequest,
    RefundLookup,
    RefundStatus,
    Verdict,
    after_cancel,
    after_refund_lookup,
)
from billing.portone.answers import Exchange, Transport
from billing.portone.cancels import classify_cancel, classify_lookup, find_refund, whole_krw

IMP = "imps_000000000001"
REQUEST = CancelRequest(IMP, "sub-abc-1-1", amount=3000, checksum=9900, reason="고객 요청")


def body(code: int = 0, message: str | None = None, response: object = None) -> bytes:
    return json.dumps({"code": code, "message": message, "response": response}).encode()


def payment(
    *cancels: int, amount: object = 9900, status: str = "paid", **extra: Any
) -> dict[str, Any]:
    history = [
        {
            "amount": c,
            "cancelled_at": 1700000000 + i,
            "reason": "r",
            "cancellation_id": f"c{i + 1}",
            "pg_tid": "t",
            "receipt_url": "u",
        }
        for i, c in enumerate(cancels)
    ]
    return {
        "imp_uid": IMP,
        "merchant_uid": "sub-abc-1-1",
        "amount": amount,
        "cancel_amount": sum(cancels),
        "status": status,
        "cancel_history": history,
        **extra,
    }


OK = Exchange(200, body(response=payment(3000)))

CANCEL_ANSWERS = [
    ("applied", OK, False, CancelOutcome.SUCCEEDED),
    ("applied on a resend", OK, True, CancelOutcome.SUCCEEDED),
    (
        "checksum mismatch refused",
        Exchange(200, body(-1, "checksum이 취소가능금액과 다릅니다")),
        False,
        CancelOutcome.REFUSED,
    ),
    (
        "refused with 400",
        Exchange(400, body(-1, "amount: must be greater than 0")),
        False,
        CancelOutcome.REFUSED,
    ),
    (
        "refusal of a resend: look it up",
        Exchange(200, body(-1, "checksum")),
        True,
        CancelOutcome.UNKNOWN,
    ),
    (
        "never left",
        Exchange(failure=Transport.NOT_SENT, detail="ConnectError"),
        False,
        CancelOutcome.TRANSIENT,
    ),
    ("token expired", Exchange(401, body(-1, "Unauthorized")), False, CancelOutcome.TRANSIENT),
    ("rate limited", Exchange(429, b""), False, CancelOutcome.TRANSIENT),
    (
        "timeout",
        Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"),
        False,
        CancelOutcome.UNKNOWN,
    ),
    (
        "reset",
        Exchange(failure=Transport.NO_ANSWER, detail="RemoteProtocolError"),
        False,
        CancelOutcome.UNKNOWN,
    ),
    ("5xx", Exchange(500, body(-1, "internal")), False, CancelOutcome.UNKNOWN),
    ("502 html", Exchange(502, b"<html>bad gateway</html>"), False, CancelOutcome.UNKNOWN),
    ("garbage", Exchange(200, b"not json"), False, CancelOutcome.UNKNOWN),
    ("not an envelope", Exchange(200, b"[1, 2]"), False, CancelOutcome.UNKNOWN),
    ("code 0 without payment", Exchange(200, body(response=None)), False, CancelOutcome.UNKNOWN),
    (
        "another payment",
        Exchange(200, body(response={**payment(3000), "imp_uid": "imps_x"})),
        False,
        CancelOutcome.UNKNOWN,
    ),
    (
        "code 0 but history lacks it",
        Exchange(200, body(response=payment())),
        False,
        CancelOutcome.UNKNOWN,
    ),
    (
        "code 0 with another amount",
        Exchange(200, body(response=payment(2000))),
        False,
        CancelOutcome.UNKNOWN,
    ),
    ("refusal with 5xx", Exchange(503, body(-1, "점검중")), False, CancelOutcome.UNKNOWN),
]


@pytest.mark.parametrize(
    ("case", "exchange", "resend", "outcome"),
    CANCEL_ANSWERS,
    ids=[row[0] for row in CANCEL_ANSWERS],
)
def test_cancel_answers(
    case: str, exchange: Exchange, resend: bool, outcome: CancelOutcome
) -> None:
    assert classify_cancel(exchange, REQUEST, resend=resend).outcome == outcome


def test_a_success_carries_portones_total_and_the_cancellation() -> None:
    answer = classify_cancel(OK, REQUEST, resend=False)
    assert (answer.cancelled, answer.cancellation_id, answer.code) == (3000, "c1", 0)


def test_a_full_refund_leaves_the_payment_cancelled_and_succeeds() -> None:
    full = CancelRequest(IMP, "sub-abc-1-1", amount=6900, checksum=6900, reason="해지")
    answer = Exchange(200, body(response=payment(3000, 6900, status="cancelled")))
    assert classify_cancel(answer, full, resend=False).outcome == CancelOutcome.SUCCEEDED


def test_a_refusal_carries_portones_message() -> None:
    answer = classify_cancel(
        Exchange(200, body(-1, "이미 전액취소된 주문입니다")), REQUEST, resend=False
    )
    assert (answer.reason, answer.code, answer.http_status) == (
        "이미 전액취소된 주문입니다",
        -1,
        200,
    )


# (cancel history in KRW, checksum, amount) -> what it says about our refund. Paid 9900.
HISTORIES = [
    ("nothing cancelled yet", (), 9900, 3000, Applied.NOT_YET, 0),
    ("ours, the first", (3000,), 9900, 3000, Applied.APPLIED, 3000),
    ("ours after an earlier one", (1000, 3000), 8900, 3000, Applied.APPLIED, 4000),
    ("ours, then another after it", (1000, 3000, 500), 8900, 3000, Applied.APPLIED, 4500),
    ("earlier only: ours not yet", (1000,), 8900, 3000, Applied.NOT_YET, 1000),
    ("another amount at our balance", (2000,), 9900, 3000, Applied.NEVER, 2000),
    ("the balance jumped over ours", (5000,), 8900, 3000, Applied.NEVER, 5000),
    ("same amount twice: the one at our balance", (3000, 3000), 6900, 3000, Applied.APPLIED, 6000),
    ("same amount twice, ours not yet", (3000,), 6900, 3000, Applied.NOT_YET, 3000),
    ("PortOne has fewer refunds than we think", (), 6900, 3000, Applied.BEHIND, 0),
    ("full refund", (9900,), 9900, 9900, Applied.APPLIED, 9900),
]


@pytest.mark.parametrize(
    ("case", "cancels", "checksum", "amount", "applied", "total"),
    HISTORIES,
    ids=[row[0] for row in HISTORIES],
)
def test_cancel_histories(
    case: str, cancels: tuple[int, ...], checksum: int, amount: int, applied: Applied, total: int
) -> None:
    found = find_refund(payment(*cancels), checksum, amount)
    assert (found.applied, found.cancelled) == (applied, total)


def test_the_history_is_read_oldest_first_whatever_order_it_comes_in() -> None:
    listed = payment(1000, 3000)
    listed["cancel_history"].reverse()
    assert find_refund(listed, 8900, 3000).applied == Applied.APPLIED


def test_without_a_history_the_total_decides_only_the_clear_cases() -> None:
    bare = {"imp_uid": IMP, "amount": 9900, "status": "paid", "cancel_amount": 0}
    assert find_refund(bare, 9900, 3000).applied == Applied.NOT_YET
    assert find_refund({**bare, "cancel_amount": 3000}, 9900, 3000).applied == Applied.APPLIED
    assert find_refund({**bare, "cancel_amount": 5000}, 9900, 3000).applied == Applied.ERROR
    assert find_refund({**bare, "cancel_amount": None}, 9900, 3000).applied == Applied.ERROR


@pytest.mark.parametrize(
    "broken",
    [
        {"status": "failed"},
        {"status": "ready"},
        {"amount": "9900.5"},
        {"amount": None},
    ],
)
def test_a_payment_that_cannot_be_read_is_an_error(broken: dict[str, Any]) -> None:
    assert find_refund({**payment(3000), **broken}, 9900, 3000).applied == Applied.ERROR


@pytest.mark.parametrize("entry", [{"amount": 0}, {"amount": -5}, {"amount": "x"}, "nope"])
def test_a_history_that_cannot_be_read_falls_back_to_the_total(entry: object) -> None:
    odd = {**payment(3000), "cancel_history": [entry]}
    assert find_refund(odd, 9900, 3000).applied == Applied.APPLIED  # cancel_amount 3000


LOOKUPS = [
    ("found", Exchange(200, body(response=payment(3000))), Applied.APPLIED),
    ("not yet", Exchange(200, body(response=payment())), Applied.NOT_YET),
    ("unknown imp_uid", Exchange(404, body(-1, "존재하지 않는 결제정보입니다")), Applied.ERROR),
    ("timeout", Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"), Applied.ERROR),
    ("5xx", Exchange(500, b""), Applied.ERROR),
    ("garbage", Exchange(200, b"{"), Applied.ERROR),
    (
        "another payment",
        Exchange(200, body(response={**payment(), "imp_uid": "imps_2"})),
        Applied.ERROR,
    ),
]


@pytest.mark.parametrize(("case", "exchange", "applied"), LOOKUPS, ids=[r[0] for r in LOOKUPS])
def test_lookups(case: str, exchange: Exchange, applied: Applied) -> None:
    assert classify_lookup(exchange, IMP, 9900, 3000).applied == applied


WALL = datetime(2030, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=300)
INSIDE, OUTSIDE = WALL - timedelta(seconds=10), WALL - timedelta(seconds=300)

VERDICTS = [
    (Applied.APPLIED, INSIDE, Verdict.SUCCEEDED),
    (Applied.APPLIED, OUTSIDE, Verdict.SUCCEEDED),
    (Applied.NOT_YET, INSIDE, Verdict.WAIT),  # the request may still be in flight
    (Applied.NOT_YET, OUTSIDE, Verdict.RESEND),
    (Applied.NOT_YET, None, Verdict.RESEND),
    (Applied.NEVER, INSIDE, Verdict.FAILED),  # the balance went past ours: it cannot apply
    (Applied.BEHIND, INSIDE, Verdict.WAIT),
    (Applied.BEHIND, OUTSIDE, Verdict.FAILED),
    (Applied.ERROR, INSIDE, Verdict.WAIT),
    (Applied.ERROR, OUTSIDE, Verdict.WAIT),
]


@pytest.mark.parametrize(("applied", "sent_at", "verdict"), VERDICTS)
def test_reconciliation_verdicts(
    applied: Applied, sent_at: datetime | None, verdict: Verdict
) -> None:
    assert after_refund_lookup(RefundLookup(applied), sent_at, WALL, WINDOW) == verdict


def test_the_request_body_is_what_portone_documents() -> None:
    assert REQUEST.body() == {
        "imp_uid": IMP,
        "merchant_uid": "sub-abc-1-1",
        "amount": 3000,
        "checksum": 9900,
        "reason": "고객 요청",
    }


@pytest.mark.parametrize(
    ("value", "krw"),
    [
        (9900, 9900),
        (9900.0, 9900),
        ("9900", 9900),
        (9900.5, None),
        (True, None),
        (None, None),
        ("nan", None),
        ("x", None),
    ],
)
def test_whole_krw(value: object, krw: int | None) -> None:
    assert whole_krw(value) == krw


SUCCEEDED = CancelAnswer(CancelOutcome.SUCCEEDED, cancellation_id="c1")
REFUSED = CancelAnswer(CancelOutcome.REFUSED, "취소 불가")
NOT_SENT = CancelAnswer(CancelOutcome.TRANSIENT, "not sent: ConnectError")
NO_ANSWER = CancelAnswer(CancelOutcome.UNKNOWN, "no answer")
AFTER_CANCEL = [
    ("succeeded", RefundStatus.PROCESSING, True, SUCCEEDED, False, Verdict.SUCCEEDED),
    (
        "succeeded though the sweep took it over",
        RefundStatus.UNKNOWN,
        False,
        SUCCEEDED,
        True,
        Verdict.SUCCEEDED,
    ),
    ("refused", RefundStatus.PROCESSING, True, REFUSED, False, Verdict.FAILED),
    (
        "never left, first send: no money moved",
        RefundStatus.PROCESSING,
        True,
        NOT_SENT,
        False,
        Verdict.FAILED,
    ),
    (
        "never left, a resend: it may have applied before",
        RefundStatus.PROCESSING,
        True,
        NOT_SENT,
        True,
        Verdict.WAIT,
    ),
    ("no answer: look it up", RefundStatus.PROCESSING, True, NO_ANSWER, False, Verdict.WAIT),
    (
        "refused after the sweep took it over",
        RefundStatus.UNKNOWN,
        True,
        REFUSED,
        False,
        Verdict.IGNORE,
    ),
    ("an older send's refusal", RefundStatus.PROCESSING, False, REFUSED, False, Verdict.IGNORE),
]


@pytest.mark.parametrize(
    ("case", "status", "own", "answer", "resend", "verdict"),
    AFTER_CANCEL,
    ids=[row[0] for row in AFTER_CANCEL],
)
def test_after_cancel(
    case: str,
    status: RefundStatus,
    own: bool,
    answer: CancelAnswer,
    resend: bool,
    verdict: Verdict,
) -> None:
    assert after_cancel(status, own, answer, resend=resend) == verdict
