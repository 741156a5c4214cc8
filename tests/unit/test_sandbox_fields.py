"""Request validation of the sandbox: every limit of the PortOne V1 OpenAPI document."""

from __future__ import annotations

from datetime import date

import pytest

from billing.sandbox import fields
from billing.sandbox.cards import CardRefused
from billing.sandbox.protocol import InvalidRequest

VALID = {"customer_uid": "c1", "merchant_uid": "m1", "amount": 9900, "name": "베이직 월간 구독"}


def order(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {**VALID, **changes}
    return {key: value for key, value in body.items() if value is not None}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customer_uid": None}, "customer_uid"),
        ({"customer_uid": ""}, "customer_uid"),
        ({"customer_uid": "c" * 81}, "customer_uid"),
        ({"customer_uid": 17}, "customer_uid"),
        ({"merchant_uid": None}, "merchant_uid"),
        ({"merchant_uid": "m" * 41}, "merchant_uid"),
        ({"amount": None}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": 99.5}, "amount"),
        ({"amount": "99.5"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": [1]}, "amount"),
        ({"amount": float("nan")}, "amount"),
        ({"amount": 10**16}, "amount"),
        ({"name": None}, "name"),
        ({"name": "가" * 41}, "name"),
        ({"buyer_name": "n" * 17}, "buyer_name"),
        ({"buyer_email": "e" * 65}, "buyer_email"),
        ({"buyer_tel": "1" * 17}, "buyer_tel"),
        ({"buyer_addr": "a" * 129}, "buyer_addr"),
        ({"buyer_postcode": "1" * 9}, "buyer_postcode"),
        ({"card_quota": 3}, "card_quota"),  # 9900 KRW: no installments
        ({"amount": 50000, "card_quota": 1}, "card_quota"),
        ({"amount": 50000, "card_quota": -2}, "card_quota"),
        ({"amount": 50000, "card_quota": 2.5}, "card_quota"),
        ({"currency": "USD"}, "currency"),
    ],
)
def test_charge_order_refusals_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        fields.charge_order(order(**changes))
    assert str(caught.value).startswith(f"{field}:")


@pytest.mark.parametrize(
    "changes",
    [
        {"customer_uid": "c" * 80},
        {"merchant_uid": "m" * 40},
        {"name": "가" * 40},
        {"buyer_name": "n" * 16, "buyer_email": "e" * 64, "buyer_tel": "1" * 16},
        {"buyer_addr": "a" * 128, "buyer_postcode": "1" * 8},
        {"amount": 50000, "card_quota": 2},
        {"amount": 50000, "card_quota": "12"},
        {"card_quota": 0},
        {"amount": "9900"},
        {"amount": 9900.0},
        {"currency": "KRW"},
    ],
)
def test_charge_order_accepts_the_limits(changes: dict[str, object]) -> None:
    fields.charge_order(order(**changes))


def test_charge_order_values() -> None:
    charge = fields.charge_order(
        order(amount="55000", card_quota="3", buyer_name="홍길동", custom_data={"plan": "x"})
    )
    assert (charge.amount, charge.card_quota, charge.buyer.name) == (55000, 3, "홍길동")
    assert charge.custom_data == '{"plan": "x"}'
    assert isinstance(charge.amount, int)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}),
        (b"a=1&b=%ED%95%9C", "application/x-www-form-urlencoded", {"a": "1", "b": "한"}),
        (b"a=1&b=", "application/x-www-form-urlencoded", {"a": "1", "b": ""}),
        (b"", "application/json", {}),
        (b'{"a": 1}', "", {"a": 1}),
        (b"a=1", "", {"a": "1"}),
    ],
)
def test_decode_body(body: bytes, content_type: str, expected: dict[str, object]) -> None:
    assert fields.decode_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"a": ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"a=%FF", "application/x-www-form-urlencoded"),
        (b"<xml/>", "text/xml"),
    ],
)
def test_decode_body_refuses(body: bytes, content_type: str) -> None:
    with pytest.raises(InvalidRequest):
        fields.decode_body(body, content_type)


def test_cancel_terms() -> None:
    imp_uid, merchant_uid, terms = fields.cancel_terms({"imp_uid": "imps_1", "amount": "1000"})
    assert (imp_uid, merchant_uid, terms.amount, terms.checksum) == ("imps_1", None, 1000, None)
    with pytest.raises(InvalidRequest, match="imp_uid or merchant_uid"):
        fields.cancel_terms({"amount": 1000})
    with pytest.raises(InvalidRequest, match="amount"):
        fields.cancel_terms({"imp_uid": "imps_1", "amount": 10.5})
    with pytest.raises(InvalidRequest, match="checksum"):
        fields.cancel_terms({"imp_uid": "imps_1", "checksum": -1})


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, (1, 20)), ({"page": "2", "limit": "5"}, (2, 5)), ({"limit": "1000"}, (1, 1000))],
)
def test_paging(query: dict[str, object], expected: tuple[int, int]) -> None:
    assert fields.paging(query) == expected


@pytest.mark.parametrize("query", [{"page": "-1"}, {"limit": "1001"}, {"limit": "x"}])
def test_paging_refuses(query: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        fields.paging(query)


def test_status_and_sorting() -> None:
    assert fields.payment_status("paid") is not None
    assert fields.payment_status(None) is None
    with pytest.raises(InvalidRequest):
        fields.payment_status("done")
    assert fields.sorting({}) == "-started"
    with pytest.raises(InvalidRequest):
        fields.sorting({"sorting": "amount"})


TODAY = date(2026, 1, 15)
CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2030-12", "birth": "900101"}


@pytest.mark.parametrize(
    "changes",
    [
        {"card_number": "4111-1111-1111-1112"},  # Luhn
        {"card_number": "4111 1111 1111"},  # 12 digits
        {"card_number": "41111111111111111"},  # 17 digits
        {"card_number": "4111-1111-abcd-1111"},
        {"expiry": "2025-12"},  # past
        {"expiry": "2030-13"},
        {"expiry": "12/30"},
        {"birth": "901301"},
        {"birth": "9001"},
        {"pwd_2digit": "1"},
    ],
)
def test_registration_refuses_a_bad_card(changes: dict[str, str]) -> None:
    with pytest.raises(CardRefused) as caught:
        fields.registration({**CARD, **changes}, TODAY)
    assert "4111" not in str(caught.value)


def test_registration_keeps_only_the_masked_card() -> None:
    card, contact = fields.registration(
        {**CARD, "pwd_2digit": "12", "customer_name": "홍길동", "expiry": "2026-01"}, TODAY
    )
    assert card.number == "411111******1111"
    assert contact.name == "홍길동"
    assert "1111-1111" not in repr((card, contact))
    assert "900101" not in repr((card, contact))


def test_registration_accepts_amex_and_business_numbers() -> None:
    card, _ = fields.registration(
        {"card_number": "378282246310005", "expiry": "2030-01", "birth": "1234567890"}, TODAY
    )
    assert card.number == "378282*****0005"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"card_number": None}, "card_number"),
        ({"expiry": None}, "expiry"),
        ({"customer_name": "n" * 21}, "customer_name"),
        ({"customer_postcode": "1" * 9}, "customer_postcode"),
    ],
)
def test_registration_fields_are_checked(changes: dict[str, object], field: str) -> None:
    body = {key: value for key, value in {**CARD, **changes}.items() if value is not None}
    with pytest.raises(InvalidRequest, match=field):
        fields.registration(body, TODAY)
