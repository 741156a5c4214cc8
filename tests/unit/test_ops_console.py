"""The console's pure parts: BILLING_OPS_AUTH, basic credentials, CSRF tokens, the chart's
geometry, form fields and how durations read."""

from __future__ import annotations

import base64
from datetime import date, timedelta

import pytest

from billing.errors import ConfigError, InvalidInput
from billing.services.charge_days import Day
from billing.web.ops.auth import OpsAuth, parse_ops_auth
from billing.web.ops.chart import HEIGHT, TOP, draw
from billing.web.ops.console import duration
from billing.web.ops.csrf import LIFETIME, CsrfTokens
from billing.web.ops.forms import Form


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("oncall:s3cret", OpsAuth("oncall", "s3cret")),
        ("oncall:pass:with:colons", OpsAuth("oncall", "pass:with:colons")),
    ],
)
def test_ops_auth_is_off_or_a_user_and_password(text: str | None, expected: OpsAuth) -> None:
    assert parse_ops_auth(text) == expected


@pytest.mark.parametrize("text", ["oncall", "oncall:", ":s3cret", ":"])
def test_ops_auth_without_a_user_or_a_password_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_ops_auth(text)
    assert refused.value.message == "BILLING_OPS_AUTH: must be user:password, both non-empty"


def test_the_password_never_shows_in_the_settings_repr() -> None:
    assert "s3cret" not in repr(OpsAuth("oncall", "s3cret"))


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (basic("oncall", "s3cret"), True),
        (basic("oncall", "s3cret").replace("Basic", "basic"), True),
        (basic("oncall", "wrong"), False),
        (basic("other", "s3cret"), False),
        (basic("oncall", "s3cret-and-more"), False),
        (basic("oncall", ""), False),
        ("Bearer " + base64.b64encode(b"oncall:s3cret").decode(), False),
        ("Basic not-base64!", False),
        ("Basic " + base64.b64encode(b"no colon").decode(), False),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), False),
        ("", False),
        (None, False),
    ],
)
def test_basic_credentials(header: str | None, accepted: bool) -> None:
    assert OpsAuth("oncall", "s3cret").accepts(header) is accepted


def test_csrf_tokens_are_accepted_for_a_day_by_every_process_with_the_same_credentials() -> None:
    now = [1_800_000_000.0]
    issuer = CsrfTokens(OpsAuth("oncall", "s3cret"), clock=lambda: now[0])
    other_process = CsrfTokens(OpsAuth("oncall", "s3cret"), clock=lambda: now[0])
    token = issuer.issue()
    assert other_process.valid(token)
    now[0] += LIFETIME
    assert other_process.valid(token)
    now[0] += 1
    assert not other_process.valid(token)


@pytest.mark.parametrize(
    "forged",
    [None, "", "abc", "1800000000", "1800000000.", "1800000000.00", "x.y", "１８.abc", "9" * 20],
)
def test_a_forged_or_missing_csrf_token_is_refused(forged: str | None) -> None:
    tokens = CsrfTokens(OpsAuth("oncall", "s3cret"), clock=lambda: 1_800_000_000.0)
    assert not tokens.valid(forged)


def test_a_new_password_voids_every_token() -> None:
    clock = lambda: 1_800_000_000.0  # noqa: E731
    token = CsrfTokens(OpsAuth("oncall", "old"), clock=clock).issue()
    assert not CsrfTokens(OpsAuth("oncall", "new"), clock=clock).valid(token)
    issued, _, signature = token.partition(".")
    assert not CsrfTokens(OpsAuth("oncall", "old"), clock=clock).valid(
        f"{int(issued) + 1}.{signature}"
    )


def test_the_chart_scales_bars_to_the_busiest_day() -> None:
    first = date(2027, 1, 1)
    days = [Day(first, paid=4, failed=1), Day(first + timedelta(days=1)), Day(first, paid=2)]
    chart = draw(days)
    plot = HEIGHT - TOP - 20
    tallest = chart.columns[0].bars[0]
    assert (tallest.kind, tallest.height, tallest.y) == ("paid", plot, TOP)
    assert [bar.kind for bar in chart.columns[0].bars] == ["paid", "failed"]
    assert chart.columns[0].bars[1].height == plot / 4
    assert chart.columns[1].bars == ()  # a day with nothing has no bar, not a sliver
    assert chart.columns[2].bars[0].height == plot / 2
    assert chart.columns[0].title == "2027-01-01: 4 paid, 1 failed"
    assert (chart.peak, chart.paid, chart.failed) == (4, 6, 1)


def test_the_chart_of_an_empty_window_draws_no_bar() -> None:
    chart = draw([Day(date(2027, 1, 1) + timedelta(days=n)) for n in range(60)])
    assert len(chart.columns) == 60
    assert all(column.bars == () for column in chart.columns)
    assert [label.text for label in chart.labels[2:]] == [
        "01-01",
        "01-11",
        "01-21",
        "01-31",
        "02-10",
        "02-20",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (125, "2 min 5 s"),
        (3600, "1 h"),
        (3 * 3600 + 60, "3 h 1 min"),
        (2 * 86400 + 3 * 3600 + 59, "2 d 3 h"),
        (86400 + 30, "1 d"),
    ],
)
def test_durations_read_in_the_two_largest_units(seconds: int, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("", None), ("  ", None), ("5000", 5000), ("5,000", 5000), (" 700 ", 700)],
)
def test_refund_amounts(amount: str, expected: int | None) -> None:
    assert Form({"amount": amount}).amount() == expected


@pytest.mark.parametrize("amount", ["0", "-5", "12.5", "abc", "1e3", "9" * 20, "٣"])
def test_a_refund_amount_that_is_not_whole_krw_is_refused(amount: str) -> None:
    with pytest.raises(InvalidInput, match=r"^amount: a whole number of KRW above 0"):
        Form({"amount": amount}).amount()


def test_a_reason_is_required_and_kept_in_one_line() -> None:
    assert Form({"reason": "  card\nfixed  by phone "}).reason() == "card fixed by phone"
    with pytest.raises(InvalidInput, match=r"^reason: say why"):
        Form({"reason": " \t "}).reason()
    with pytest.raises(InvalidInput, match=r"^reason: at most 200 characters"):
        Form({"reason": "x" * 201}).reason()
