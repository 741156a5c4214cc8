"""Billing keys by API: checking card data locally, PortOne's answers, the commands against the
bundled sandbox over HTTP, and proof that card data is never printed, logged or stored."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billing.app import App
from billing.db.tables import Event
from billing.errors import BillingError, InvalidInput
from billing.portone.answers import Exchange, Transport
from billing.portone.client import PortOneClient
from billing.portone.keys import KeyOutcome, classify_key, mask_number, scrub
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services.billing_keys import GatewayRefused, parse_card, register_key
from billing.services.customers import add_customer
from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import NOW, CliRunner, Result, snapshot

TODAY = date(2026, 11, 27)
CARD = "5105-1051-0510-5100"  # a Mastercard test number (Luhn-valid)
DIGITS = CARD.replace("-", "")
BIRTH = "870514"
PWD = "37"
EXPIRY = "2099-12"


# -- card data, checked locally --------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expiry", "birth", "pwd"),
    [
        ("4111111111111111", "2099-12", "900101", None),
        ("4111-1111-1111-1111", "2026-11", "900101", "12"),  # this month still works
        ("4111 1111 1111 1111", "2099-01", "1234567890", "00"),  # business number
        ("378282246310005", "2030-06", "991231", None),  # 15 digits (Amex)
    ],
)
def test_good_card_data(number: str, expiry: str, birth: str, pwd: str | None) -> None:
    card = parse_card(number, expiry, birth, pwd, TODAY)
    assert card.number == number.replace("-", "").replace(" ", "")
    assert (card.expiry, card.birth, card.pwd_2digit) == (expiry, birth, pwd)


BAD = [
    ("4111111111111112", EXPIRY, BIRTH, None, "--card-number is not a valid card number"),
    ("41111111111111", EXPIRY, BIRTH, None, "--card-number must be 15 or 16 digits"),
    ("41111111111111111", EXPIRY, BIRTH, None, "--card-number must be 15 or 16 digits"),
    ("4111-1111-1111-111a", EXPIRY, BIRTH, None, "--card-number must be 15 or 16 digits"),
    ("4111--1111-1111-1111", EXPIRY, BIRTH, None, "--card-number must be 15 or 16 digits"),
    (CARD, "2026-10", BIRTH, None, "--expiry is in the past"),
    (CARD, "2099-13", BIRTH, None, "--expiry must be YYYY-MM"),
    (CARD, "12/29", BIRTH, None, "--expiry must be YYYY-MM"),
    (CARD, EXPIRY, "871332", None, "--birth must be"),
    (CARD, EXPIRY, "8705", None, "--birth must be"),
    (CARD, EXPIRY, "87-05-14", None, "--birth must be"),
    (CARD, EXPIRY, BIRTH, "123", "--pwd-2digit must be"),
    (CARD, EXPIRY, BIRTH, "ab", "--pwd-2digit must be"),
]


@pytest.mark.parametrize(
    ("number", "expiry", "birth", "pwd", "message"),
    BAD,
    ids=[row[4] + " " + str(i) for i, row in enumerate(BAD)],
)
def test_bad_card_data_is_refused_without_echoing_it(
    number: str, expiry: str, birth: str, pwd: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_card(number, expiry, birth, pwd, TODAY)
    assert caught.value.message.startswith(message)
    for secret in (number, number.replace("-", ""), expiry, birth, pwd or "@@"):
        assert secret not in caught.value.message


def test_card_details_never_show_themselves() -> None:
    card = parse_card(CARD, EXPIRY, BIRTH, PWD, TODAY)
    for shown in (repr(card), str(card), f"{card}", repr([card])):
        assert DIGITS not in shown and BIRTH not in shown and EXPIRY not in shown
        assert "************5100" in shown


@pytest.mark.parametrize(
    ("shown", "masked"),
    [
        ("4111111111111111", "************1111"),
        ("411111******1111", "************1111"),
        ("4111-1111-1111-1111", "************1111"),
        ("378282246310005", "***********0005"),
    ],
)
def test_masks(shown: str, masked: str) -> None:
    assert mask_number(shown) == masked


def test_scrub_masks_each_piece_and_anything_like_a_card_number() -> None:
    card = parse_card(CARD, EXPIRY, BIRTH, PWD, TODAY)
    text = f"card {CARD} / {DIGITS} exp {EXPIRY} birth {BIRTH} pwd {PWD} code 137 other 4111111111111111"
    cleaned = scrub(text, card)
    for secret in (CARD, DIGITS, EXPIRY, BIRTH, "4111111111111111", " 37 "):
        assert secret not in cleaned
    assert "code 137" in cleaned  # only whole pieces are masked


# -- PortOne's answers ---------------------------------------------------------------------------


def envelope(code: int = 0, message: str | None = None, response: object = None) -> bytes:
    return json.dumps({"code": code, "message": message, "response": response}).encode()


KEY = {"customer_uid": "c1", "card_name": "삼성카드", "card_number": "510510******5100"}
ANSWERS = [
    ("issued", Exchange(200, envelope(response=KEY)), KeyOutcome.DONE),
    ("refused", Exchange(200, envelope(-1, "유효기간이 지난 카드입니다")), KeyOutcome.REFUSED),
    ("bad request", Exchange(400, envelope(-1, "card_number: required")), KeyOutcome.REFUSED),
    (
        "no key",
        Exchange(404, envelope(-1, "등록된 빌링키 정보가 존재하지 않습니다")),
        KeyOutcome.ABSENT,
    ),
    (
        "never left",
        Exchange(failure=Transport.NOT_SENT, detail="ConnectError"),
        KeyOutcome.NOT_SENT,
    ),
    ("bad credentials", Exchange(401, envelope(-1, "Unauthorized")), KeyOutcome.NOT_SENT),
    ("timeout", Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"), KeyOutcome.UNKNOWN),
    ("5xx", Exchange(502, b"<html>"), KeyOutcome.UNKNOWN),
    ("garbage", Exchange(200, b"{"), KeyOutcome.UNKNOWN),
    (
        "another customer",
        Exchange(200, envelope(response={**KEY, "customer_uid": "c2"})),
        KeyOutcome.UNKNOWN,
    ),
]


@pytest.mark.parametrize(("case", "exchange", "outcome"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_key_answers(case: str, exchange: Exchange, outcome: KeyOutcome) -> None:
    assert classify_key(exchange, "c1", None).outcome == outcome


def test_an_issued_key_shows_the_issuer_and_the_last_four_digits() -> None:
    answer = classify_key(ANSWERS[0][1], "c1", None)
    assert (answer.card_name, answer.card_number) == ("삼성카드", "************5100")


# -- the commands against the sandbox over HTTP ------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(port=0))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(sandbox: SandboxServer) -> dict[str, str]:
    return {"BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": sandbox.url}


def registrations(sandbox: SandboxServer) -> int:
    return sandbox.stats()["requests"].get("POST /subscribe/customers/{customer_uid}", 0)


def live_in_the_future(sandbox: SandboxServer) -> None:
    """The sandbox's calendar moves 20 years on: a card expiring in 2031 has expired there."""
    later = time.time() + 20 * 365 * 86400
    sandbox.state.clock = lambda: later


def register(
    cli: CliRunner, env: dict[str, str], *extra: str, card: str = CARD, expiry: str = EXPIRY
) -> Result:
    return cli(
        "customers",
        "register",
        "cust-1",
        "--card-number",
        card,
        "--expiry",
        expiry,
        "--birth",
        BIRTH,
        "--pwd-2digit",
        PWD,
        *extra,
        env=env,
    )


def test_register_issues_a_key_at_portone(
    cli: CliRunner, env: dict[str, str], sandbox: SandboxServer
) -> None:
    ok(cli("customers", "add", "cust-1", "--name", "홍길동", "--phone", "010-1234-5678", env=env))
    view = js(register(cli, env, "--json"))
    assert view == {
        "customer_uid": "cust-1",
        "billing_key": "registered",
        "card_name": "삼성카드",
        "card_number": "************5100",
    }
    key = sandbox.state.keys.find("cust-1", 0)
    assert key is not None and key.card.number == "510510******5100"
    assert (key.contact.name, key.contact.tel) == ("홍길동", "010-1234-5678")
    out = ok(register(cli, env, card="4111111111111111"))  # a new card replaces the key
    assert out.strip() == "registered a billing key for cust-1: 신한카드 ************1111"


def test_register_checks_card_data_before_calling_portone(
    cli: CliRunner, env: dict[str, str], sandbox: SandboxServer, db_url: str
) -> None:
    ok(cli("customers", "add", "cust-1", env=env))
    before = snapshot(db_url)
    refused(register(cli, env, card="4111-1111-1111-1112"), "--card-number is not a valid")
    refused(register(cli, env, expiry="2020-01"), "--expiry is in the past")
    refused(
        cli("customers", "register", "cust-1", "--card-number", CARD, "--expiry", EXPIRY, env=env),
        "--birth",
    )
    refused(
        cli(
            "customers",
            "register",
            "nobody",
            "--card-number",
            CARD,
            "--expiry",
            EXPIRY,
            "--birth",
            BIRTH,
            env=env,
        ),
        "unknown customer 'nobody'",
        "customers add",
    )
    assert registrations(sandbox) == 0
    assert snapshot(db_url) == before


def test_a_refusal_by_portone_is_one_line_with_its_message(
    cli: CliRunner, env: dict[str, str], sandbox: SandboxServer, db_url: str
) -> None:
    ok(cli("customers", "add", "cust-1", env=env))
    live_in_the_future(sandbox)
    before = snapshot(db_url)
    line = refused(register(cli, env, expiry="2031-01"), "PortOne refused to register")
    assert "유효기간이 지난 카드입니다" in line
    assert registrations(sandbox) == 1
    assert snapshot(db_url) == before


def test_delete_removes_the_key_and_refuses_while_subscriptions_need_it(
    cli: CliRunner, env: dict[str, str], sandbox: SandboxServer
) -> None:
    ok(cli("customers", "add", "cust-1", env=env))
    ok(register(cli, env))
    ok(cli("subscriptions", "create", "--customer", "cust-1", "--plan", "basic-monthly", env=env))
    refused(cli("customers", "delete", "cust-1", env=env), "1 subscription(s)", "--force")
    assert sandbox.state.keys.find("cust-1", 0) is not None
    view = js(
        cli("customers", "delete", "cust-1", "--reason", "해지", "--force", "--json", env=env)
    )
    assert view == {
        "customer_uid": "cust-1",
        "billing_key": "deleted",
        "card_name": "삼성카드",
        "card_number": "************5100",
    }
    assert sandbox.state.keys.find("cust-1", 0) is None
    refused(
        cli("customers", "delete", "cust-1", "--force", env=env),
        "PortOne has no billing key for 'cust-1'",
        "등록된 빌링키",
    )
    refused(cli("customers", "delete", "ghost", env=env), "unknown customer 'ghost'")


def test_the_event_log_keeps_the_issuer_and_last_four_digits_only(
    cli: CliRunner, env: dict[str, str], app: App
) -> None:
    ok(cli("customers", "add", "cust-1", env=env))
    ok(register(cli, env))
    ok(cli("customers", "delete", "cust-1", "--reason", "해지", env=env))
    with app.transaction() as session:
        events = [(e.kind, e.data) for e in session.scalars(select(Event).order_by(Event.id))]
    assert events == [
        (
            "billing_key_registered",
            {
                "customer_uid": "cust-1",
                "card_name": "삼성카드",
                "card_number": "************5100",
                "pg": None,
                "actor": "cli",
            },
        ),
        (
            "billing_key_deleted",
            {
                "customer_uid": "cust-1",
                "card_name": "삼성카드",
                "card_number": "************5100",
                "reason": "해지",
                "forced": False,
                "actor": "cli",
            },
        ),
    ]


# -- card data goes nowhere ----------------------------------------------------------------------


def leaks(text: str) -> list[str]:
    """The pieces of card data found in ``text`` (the 2-digit password is checked by value)."""
    pieces = (CARD, DIGITS, "5105 1051 0510 5100", BIRTH, EXPIRY, "pwd")
    return [piece for piece in pieces if piece in text]


def values(document: Any) -> Iterator[Any]:
    if isinstance(document, dict):
        for value in document.values():
            yield from values(value)
    elif isinstance(document, list):
        for value in document:
            yield from values(value)
    else:
        yield document


def test_card_data_appears_in_no_output_stored_row_or_event(
    cli: CliRunner, env: dict[str, str], sandbox: SandboxServer, app: App, db_url: str
) -> None:
    ok(cli("customers", "add", "cust-1", env=env))
    results = [
        register(cli, env),
        register(cli, env, "--json"),
        register(cli, env, card="5105-1051-0510-5101"),
        register(cli, env, expiry="2026-01"),
        cli("customers", "register", "cust-1", DIGITS, "--expiry", EXPIRY, env=env),
    ]
    live_in_the_future(sandbox)
    results.append(register(cli, env, expiry="2031-01"))
    assert [r.code for r in results] == [0, 0, 1, 1, 2, 1]
    outputs = "\n".join(r.out + r.err for r in results)
    assert leaks(outputs) == [], outputs
    assert PWD not in values(json.loads(results[1].out))
    rows = repr(snapshot(db_url))
    assert leaks(rows) == []
    with app.transaction() as session:
        data = [e.data for e in session.scalars(select(Event))]
    assert data and leaks(json.dumps(data, ensure_ascii=False)) == []
    assert PWD not in list(values(data))


def echoing_portone(request: httpx.Request) -> httpx.Response:
    """A PortOne whose refusal repeats everything it was sent, as a careless PG might."""
    if request.url.path == "/users/getToken":
        token = {"access_token": "t0ken", "now": 0, "expired_at": 1800}
        return httpx.Response(200, json={"code": 0, "message": None, "response": token})
    sent = json.loads(request.content)
    message = (
        f"카드 {sent['card_number']} ({CARD}) 유효기간 {sent['expiry']} 생년월일 "
        f"{sent['birth']} 비밀번호 {sent['pwd_2digit']} 확인 실패"
    )
    return httpx.Response(200, json={"code": -1, "message": message, "response": None})


def test_card_data_echoed_by_portone_is_masked_in_errors_logs_and_exceptions(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.clocks.billing.now()  # the fixed clock
    with app.transaction() as session:
        add_customer(session, "cust-1", NOW)
    client = PortOneClient(
        "https://portone.invalid", "k", "s", transport=httpx.MockTransport(echoing_portone)
    )
    card = parse_card(CARD, EXPIRY, BIRTH, PWD, TODAY)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GatewayRefused) as caught:
        register_key(app, client, "cust-1", card, None)
    error: BillingError = caught.value
    shown = [
        error.message,
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        caplog.text,
    ]
    for text in shown:
        assert leaks(text) == [], text
        assert f" {PWD} " not in text
    assert error.message.startswith("PortOne refused to register a billing key for 'cust-1'")
    assert "확인 실패" in error.message and "[redacted]" in error.message
    with app.transaction() as session:
        assert list(session.scalars(select(Event))) == []


def test_register_over_http_logs_nothing_of_the_card(
    app: App, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    with app.transaction() as session:
        add_customer(session, "cust-1", NOW)
    client = PortOneClient(sandbox.url, "sandbox_key", "sandbox_secret")
    card = parse_card(CARD, EXPIRY, BIRTH, PWD, TODAY)
    caplog.set_level(logging.DEBUG)
    register_key(app, client, "cust-1", card, "kcp_billing.T0000")
    live_in_the_future(sandbox)
    with pytest.raises(GatewayRefused):
        register_key(app, client, "cust-1", parse_card(CARD, "2031-01", BIRTH, PWD, TODAY), None)
    client.close()
    assert "billing_key_register" in caplog.text
    assert leaks(caplog.text) == [], caplog.text
    assert not any(PWD in str(getattr(r, "fields", "")) for r in caplog.records)


def test_a_card_number_given_by_mistake_as_an_argument_is_not_echoed(
    cli: CliRunner, env: dict[str, str]
) -> None:
    """Click names an unexpected argument in its error; the one-line error masks it."""
    result = cli(
        "customers",
        "register",
        "cust-1",
        DIGITS,
        "--card-number",
        CARD,
        "--expiry",
        EXPIRY,
        "--birth",
        BIRTH,
        env=env,
    )
    assert refused(result, "unexpected extra argument")
    assert leaks(result.out + result.err) == [], result.err
