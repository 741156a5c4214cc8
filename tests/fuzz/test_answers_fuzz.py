"""Fuzzing the classification of PortOne's answers (billing/portone/answers.py).

Whatever the status code and body (random bytes, truncated or non-JSON bodies, JSON of the
wrong shape or types, huge or deeply nested documents), the classifiers never raise, and they
only say approved/declined (or paid/declined/nothing for lookups) when the answer really
says so for our merchant_uid; garbage is UNKNOWN for a charge and ERROR for a lookup.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing.portone.answers import (
    MAX_REASON,
    Exchange,
    Found,
    Outcome,
    Transport,
    classify_again,
    classify_find_all,
    classify_find_paid,
    same_amount,
)
from tests.fuzz.strategies import binary, deep, dumps, json_values, truncated

MERCHANT_UID = "sub-abcdefghijkl-3-1"
AMOUNT = 9900
FUZZ = settings(max_examples=600, deadline=None)

statuses = st.one_of(
    st.none(),
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504]),
    st.integers(-1, 1000),
)
failures = st.sampled_from([None, None, None, Transport.NOT_SENT, Transport.NO_ANSWER])
codes = st.one_of(st.just(0), st.just(0), st.just(-1), st.integers(), json_values)
payments = st.fixed_dictionaries(
    {},
    optional={
        "merchant_uid": st.one_of(st.just(MERCHANT_UID), st.just(MERCHANT_UID), json_values),
        "status": st.one_of(st.sampled_from(["paid", "failed", "ready", "cancelled"]), json_values),
        "imp_uid": st.one_of(st.just("imps_000000000001"), st.just(""), json_values),
        "amount": st.one_of(
            st.just(AMOUNT),
            st.just(float(AMOUNT)),
            st.just(str(AMOUNT)),
            st.just(AMOUNT + 1),
            json_values,
        ),
        "fail_reason": st.one_of(st.just("잔액부족"), st.text(max_size=2000), json_values),
        "failed_at": st.one_of(st.integers(0, 2**40), st.none()),  # mixed types: see below
    },
)
listings = st.fixed_dictionaries(
    {"list": st.one_of(st.lists(payments, max_size=4), json_values)},
    optional={"total": st.integers(), "previous": json_values},
)
responses = st.one_of(payments, listings, json_values)
envelopes = st.fixed_dictionaries(
    {"code": codes}, optional={"message": json_values, "response": responses}
).map(dumps)
bodies = st.one_of(
    envelopes,
    envelopes,
    truncated(envelopes),
    binary,
    deep,
    json_values.map(dumps),
    st.just(b"\xff\xfe{"),
    st.just(b'{"code": 0, "response": ' + b" " * 3_000_000 + b"}"),
)
exchanges = st.builds(Exchange, statuses, bodies, failures, st.text(max_size=50))


def envelope(body: bytes) -> dict[str, Any] | None:
    """The answer's envelope if it is one (a JSON object with an integer code), else None."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return document if isinstance(code, int) and not isinstance(code, bool) else None


def ours(payment: object) -> dict[str, Any] | None:
    if isinstance(payment, dict) and payment.get("merchant_uid") == MERCHANT_UID:
        return payment
    return None


@FUZZ
@given(exchanges)
@example(Exchange(200, b"<html>502 Bad Gateway</html>"))
@example(Exchange(200, b'{"code": 0, "response": {"merchant_uid": "sub-abcdefghijkl-3-1"'))
@example(Exchange(200, b'{"code": true, "response": {}}'))
@example(
    Exchange(
        200,
        b'{"code": 0, "response": {"merchant_uid": "sub-abcdefghijkl-3-1", '
        b'"status": "paid", "imp_uid": "i", "amount": NaN}}',
    )
)
def test_classify_again_never_raises_and_only_approves_a_real_payment(exchange: Exchange) -> None:
    answer = classify_again(exchange, MERCHANT_UID, AMOUNT)
    assert answer.outcome in Outcome
    assert len(answer.reason) <= MAX_REASON
    document = envelope(exchange.body)
    payment = ours(document.get("response")) if document else None
    if exchange.failure == Transport.NOT_SENT:
        assert answer.outcome == Outcome.TRANSIENT
        return
    if exchange.failure is not None or exchange.status is None or document is None:
        allowed = {Outcome.UNKNOWN}
        if exchange.failure is None and exchange.status in (401, 429):
            allowed = {Outcome.TRANSIENT}
        assert answer.outcome in allowed, "garbage is unknown, never approved or declined"
        return
    if answer.outcome == Outcome.APPROVED:
        assert exchange.status == 200 and document["code"] == 0 and payment is not None
        assert payment.get("status") == "paid" and payment.get("imp_uid") == answer.imp_uid
        assert isinstance(answer.imp_uid, str) and answer.imp_uid
        assert same_amount(payment.get("amount"), AMOUNT)
    if answer.outcome == Outcome.DECLINED:
        assert exchange.status == 200 and document["code"] == 0 and payment is not None
        assert payment.get("status") == "failed"
    if answer.outcome == Outcome.REFUSED:
        assert document["code"] != 0
        assert exchange.status == 200 or 400 <= exchange.status < 500
        assert exchange.status not in (401, 429)


@FUZZ
@given(exchanges)
def test_classify_find_paid_never_raises_and_only_finds_a_real_payment(exchange: Exchange) -> None:
    lookup = classify_find_paid(exchange, MERCHANT_UID, AMOUNT)
    assert lookup.found in Found
    document = envelope(exchange.body)
    if exchange.failure is not None or exchange.status is None or document is None:
        assert lookup.found == Found.ERROR, "garbage is an error, never paid or nothing"
        return
    if lookup.found == Found.PAID:
        payment = ours(document.get("response"))
        assert exchange.status == 200 and document["code"] == 0 and payment is not None
        assert payment.get("status") == "paid" and isinstance(lookup.imp_uid, str)
    if lookup.found == Found.NOTHING:
        assert exchange.status == 404 and document["code"] != 0
    assert lookup.found != Found.DECLINED


@FUZZ
@given(exchanges)
def test_classify_find_all_never_raises_and_only_declines_when_no_attempt_was_paid(
    exchange: Exchange,
) -> None:
    lookup = classify_find_all(exchange, MERCHANT_UID, AMOUNT)
    assert lookup.found in Found
    document = envelope(exchange.body)
    if exchange.failure is not None or exchange.status is None or document is None:
        assert lookup.found == Found.ERROR, "garbage is an error, never declined or nothing"
        return
    response = document.get("response")
    listing = response.get("list") if isinstance(response, dict) else None
    attempts = [p for p in listing if ours(p)] if isinstance(listing, list) else []
    if lookup.found in (Found.DECLINED, Found.REFUNDED):
        assert exchange.status == 200 and document["code"] == 0
        final = ("failed", "cancelled", "ready")
        assert attempts and all(p.get("status") in final for p in attempts)
    if lookup.found == Found.REFUNDED:
        assert any(p.get("status") == "cancelled" for p in attempts)
        assert 0 < lookup.refunded <= AMOUNT
    if lookup.found == Found.NOTHING:
        by_404 = exchange.status == 404 and document["code"] != 0
        empty = exchange.status == 200 and document["code"] == 0 and isinstance(listing, list)
        assert by_404 or (empty and not attempts)
    assert lookup.found != Found.PAID  # findAll alone never settles a payment


def test_classify_find_all_with_failed_at_of_mixed_types_is_an_error_not_an_exception() -> None:
    attempts = [
        {"merchant_uid": MERCHANT_UID, "status": "failed", "failed_at": "2027-01-31"},
        {"merchant_uid": MERCHANT_UID, "status": "failed", "failed_at": 1801234567},
    ]
    body = dumps({"code": 0, "message": None, "response": {"total": 2, "list": attempts}})
    lookup = classify_find_all(Exchange(200, body), MERCHANT_UID, AMOUNT)
    assert lookup.found in (Found.DECLINED, Found.ERROR)
