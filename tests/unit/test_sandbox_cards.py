"""Card checks of the sandbox, and that card data never reaches what it keeps or logs."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from billing.sandbox import SandboxConfig
from billing.sandbox.cards import CardRefused, card_face, check_expiry, luhn_ok, mask
from billing.sandbox.routes import RawRequest, dispatch
from billing.sandbox.state import SandboxState

CARD = "5365-1012-3456-7893"  # passes Luhn
BIRTH = "880524"
PASSWORD = "42"


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("4111111111111111", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("5365101234567893", True),
        ("4111111111111112", False),
        ("5365101234567890", False),
    ],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def test_mask() -> None:
    assert mask("4111111111111111") == "411111******1111"
    assert mask("378282246310005") == "378282*****0005"


def test_card_face_is_masked_and_named() -> None:
    face = card_face(CARD)
    assert face.number == "536510******7893"
    assert (face.name, face.code, face.card_type) == ("삼성카드", "365", 0)


@pytest.mark.parametrize(
    ("expiry", "ok"),
    [("2026-01", True), ("2025-12", False), ("2026-00", False), ("26-01", False), ("", False)],
)
def test_expiry(expiry: str, ok: bool) -> None:
    if ok:
        check_expiry(expiry, date(2026, 1, 31))
    else:
        with pytest.raises(CardRefused):
            check_expiry(expiry, date(2026, 1, 31))


def test_card_data_is_not_kept_answered_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = SandboxState(SandboxConfig(verbose=True))
    token = state.tokens.issue().access_token
    body = (
        f'{{"card_number": "{CARD}", "expiry": "2099-01", "birth": "{BIRTH}", '
        f'"pwd_2digit": "{PASSWORD}", "customer_name": "홍길동"}}'
    ).encode()
    answers = [
        dispatch(
            state, RawRequest("POST", "/subscribe/customers/c1", body, "application/json", token)
        ),
        dispatch(
            state,
            RawRequest(
                "POST",
                "/subscribe/payments/again",
                b'{"customer_uid": "c1", "merchant_uid": "m1", "amount": 1000, "name": "n"}',
                "application/json",
                token,
            ),
        ),
        dispatch(state, RawRequest("GET", "/subscribe/customers/c1", b"", "", token)),
    ]
    assert [reply.body["code"] for reply in answers] == [0, 0, 0]
    kept = repr(state.keys.__dict__) + repr(state.ledger_json()) + repr(state.ledger.all())
    shown = repr([reply.body for reply in answers]) + caplog.text + repr(state.config)
    for secret in (CARD, CARD.replace("-", ""), "1012-3456", "10123456", BIRTH, f'"{PASSWORD}"'):
        assert secret not in kept
        assert secret not in shown
    assert "536510******7893" in shown
    assert state.config.imp_secret not in repr(state.config)


def test_register_customer_helper_refuses_bad_cards() -> None:
    state = SandboxState(SandboxConfig())
    with pytest.raises(CardRefused):
        state.register_customer("c1", card_number="4111111111111112")
    with pytest.raises(CardRefused):
        state.register_customer("c1", expiry="2000-01")
    shown = state.register_customer("c1", birth=BIRTH, customer_email="a@example.com")
    assert shown["card_number"] == "411111******1111"
    assert shown["customer_email"] == "a@example.com"
