"""Every catalog refusal names the file, the plan and the field, in one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from billing.catalog_file import load_catalog_file, parse_catalog
from billing.domain.dunning import FinalAction
from billing.errors import CatalogError

GOOD_PLAN = """\
- id: basic
  name: 베이직
  amount: 9900
  interval: 1 month
"""


def catalog(plans: str, header: str = "") -> str:
    return textwrap.dedent(header) + "plans:\n" + textwrap.indent(plans, "  ")


def refusal(text: str) -> str:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "plans.yaml", "Asia/Seoul")
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith("plans.yaml: ")
    return message


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, colour: red}",
            "plan 'a': colour: unknown key",
        ),
        (
            "- {id: a, name: A, amount: -100, interval: 1 month}",
            "plan 'a': amount: must be a whole number of KRW greater than 0",
        ),
        ("- {id: a, name: A, amount: 0, interval: 1 month}", "plan 'a': amount: must be"),
        (
            "- {id: a, name: A, amount: 9900.5, interval: 1 month}",
            "plan 'a': amount: Input should be a valid integer",
        ),
        (
            "- {id: a, name: A, amount: 9900.0, interval: 1 month}",
            "plan 'a': amount: Input should be a valid integer",
        ),
        (
            "- {id: a, name: A, amount: '9900', interval: 1 month}",
            "plan 'a': amount: Input should be a valid integer",
        ),
        (
            "- {id: a, name: A, amount: true, interval: 1 month}",
            "plan 'a': amount: Input should be a valid integer",
        ),
        (
            "- {id: a, name: A, amount: 9900, cron: '61 * * * *'}",
            "plan 'a': cron: '61 * * * *' is not a five-field cron expression",
        ),
        (
            "- {id: a, name: A, amount: 9900, cron: '0 0 * * * *'}",
            "plan 'a': cron: '0 0 * * * *' is not a five-field cron expression",
        ),
        (
            "- {id: a, name: A, amount: 9900, cron: '0 0 30 2 *'}",
            "plan 'a': cron: '0 0 30 2 *' never fires",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 fortnight}",
            "plan 'a': interval: interval unit must be day, week, month or year",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: monthly}",
            "plan 'a': interval: interval must look like '<number> <unit>'",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 0 months}",
            "plan 'a': interval: interval must be at least 1",
        ),
        (
            "- {id: a, name: A, amount: 49999, interval: 1 month, card_quota: 3}",
            "plan 'a': card_quota: needs an amount of at least 50000 KRW",
        ),
        (
            "- {id: a, name: A, amount: 50000, interval: 1 month, card_quota: 1}",
            "plan 'a': card_quota: must be 0 (lump sum) or 2 to 36 installments",
        ),
        ("- {id: a, amount: 9900, interval: 1 month}", "plan 'a': name: required"),
        (
            "- {id: a, name: '  ', amount: 9900, interval: 1 month}",
            "plan 'a': name: must not be empty",
        ),
        (
            f"- {{id: a, name: {'가' * 41}, amount: 9900, interval: 1 month}}",
            "plan 'a': name: is sent to PortOne as `name`: at most 40 characters",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, cron: '0 0 1 * *'}",
            "plan 'a': interval/cron: a plan needs exactly one of `interval` and `cron`",
        ),
        (
            "- {id: a, name: A, amount: 9900}",
            "plan 'a': interval/cron: a plan needs exactly one of `interval` and `cron`",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, prorate_first: false}",
            "plan 'a': prorate_first: only applies to `cron` plans",
        ),
        (
            "- {id: A!, name: A, amount: 9900, interval: 1 month}",
            "plan 'A!': id: must be 1-64 characters of a-z, 0-9, '_' and '-'",
        ),
        ("- {name: A, amount: 9900, interval: 1 month}", "plan #2: id: required"),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, timezone: Mars/Base}",
            "plan 'a': timezone: 'Mars/Base' is not an IANA time zone",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, trial_days: -1}",
            "plan 'a': trial_days: must be a whole number of days",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, dunning: {retry_after: [1d, 1x]}}",
            "plan 'a': dunning.retry_after: duration unit must be s, m, h, d or w",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, dunning: {retry_after: [3d, 1d]}}",
            "plan 'a': dunning.retry_after: offsets must increase",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, dunning: {final_action: delete}}",
            "plan 'a': dunning.final_action: Input should be 'cancel' or 'pause'",
        ),
        (
            "- {id: a, name: A, amount: 9900, interval: 1 month, dunning: {retries: 3}}",
            "plan 'a': dunning.retries: unknown key",
        ),
    ],
)
def test_a_bad_plan_is_refused_naming_plan_and_field(plan: str, expected: str) -> None:
    assert expected in refusal(catalog(GOOD_PLAN + plan + "\n"))


def test_duplicate_plan_id_is_refused() -> None:
    assert refusal(catalog(GOOD_PLAN + GOOD_PLAN)) == (
        "plans.yaml: plan 'basic': id: duplicate plan id"
    )


def test_a_key_given_twice_in_one_plan_is_refused_not_overwritten() -> None:
    text = catalog("- {id: a, name: A, amount: 9900, amount: 1, interval: 1 month}\n")
    assert "line 2: not valid YAML: duplicate key 'amount'" in refusal(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plans: [\n", "plans.yaml: line 2: not valid YAML"),
        ("- just a list\n", "plans.yaml: a catalog is a mapping with a `plans:` list"),
        ("", "plans.yaml: a catalog is a mapping with a `plans:` list"),
        ("timezone: Asia/Seoul\n", "plans.yaml: plans: required"),
        ("plans: 3\n", "plans.yaml: plans: Input should be a valid list"),
        ("colour: red\nplans: []\n", "plans.yaml: colour: unknown key"),
        ("timezone: Nowhere/City\nplans: []\n", "plans.yaml: timezone: 'Nowhere/City' is not"),
        (
            "dunning: {retry_after: [1h, 2h, 3h, 4h, 5h, 6h, 7h, 8h, 9h, 10h, 11h, 12h, 13h, 14h, 15h]}\nplans: []\n",
            "plans.yaml: dunning.retry_after: more than 15 attempts in 30 days",
        ),
        ("notify: [{type: pager}]\nplans: []\n", "plans.yaml: notify[0]: Input tag 'pager' found"),
        (
            "notify: [{type: webhook, url: 'ftp://x'}]\nplans: []\n",
            "plans.yaml: notify[0].url: String should match",
        ),
        (
            "notify: [{type: email, smtp_url: 'smtp://localhost:1025'}]\nplans: []\n",
            "plans.yaml: notify[0].from: required",
        ),
        ("plans: [x: {y: &a [*a]}]\n", "plans.yaml: "),
    ],
)
def test_a_bad_file_is_refused_in_one_line(text: str, expected: str) -> None:
    assert refusal(text).startswith(expected)


@pytest.mark.parametrize(
    "url", ["smtp://mailer:hunter2-pw@mail.example:587", "smtps://mailer:@mail.example"]
)
def test_a_password_inside_smtp_url_is_refused_without_repeating_it(url: str) -> None:
    text = f"notify: [{{type: email, smtp_url: '{url}', from: b@m.example}}]\nplans: []\n"
    message = refusal(text)
    assert message.startswith("plans.yaml: notify[0].smtp_url: a password inside smtp_url")
    assert "password_env" in message and "hunter2" not in message and "\n" not in message


def test_smtp_password_env_needs_a_user_and_names_a_variable() -> None:
    ok = "notify: [{type: email, smtp_url: 'smtp://mailer@m.example:587', from: b@m.example, "
    text = ok + "password_env: SMTP_PASSWORD}]\nplans: []\n"
    [channel] = parse_catalog(text, "plans.yaml", "Asia/Seoul").notify
    assert dict(channel.settings)["password_env"] == "SMTP_PASSWORD"
    userless = ok.replace("mailer@", "") + "password_env: SMTP_PASSWORD}]\nplans: []\n"
    assert "password_env needs a user in smtp_url" in refusal(userless)
    bad_name = ok + "password_env: x}]\nplans: []\n"
    assert "notify[0].password_env: String should match" in refusal(bad_name)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (r'"\e[31m빨강\e[0m"', "'\\x1b' (U+001B)"),
        (r'"월간\r\n2"', "'\\r' (U+000D)"),
        (r'"a\tb"', "'\\t' (U+0009)"),
        (r'"\x9b2J"', "'\\x9b' (U+009B)"),
        (r'"abc\u202Efdp.exe"', "'\\u202e' (U+202E)"),
        (r'"nul\0"', "'\\x00' (U+0000)"),
    ],
)
def test_a_plan_name_with_control_characters_is_refused(name: str, shown: str) -> None:
    message = refusal(catalog(f"- {{id: a, name: {name}, amount: 9900, interval: 1 month}}\n"))
    assert message.startswith("plans.yaml: plan 'a': name: control characters")
    assert shown in message
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in message), message


def test_several_problems_are_counted_after_the_first() -> None:
    text = catalog("- {id: a, name: A, amount: -1, interval: 1 month, colour: red, size: big}\n")
    assert refusal(text).endswith("(and 2 more problems)")


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"nope\.yaml: cannot read"):
        load_catalog_file(tmp_path / "nope.yaml", "Asia/Seoul")


def test_the_shipped_catalog_is_valid_and_carries_the_spec_defaults() -> None:
    shipped = Path(__file__).resolve().parents[2] / "schedules" / "plans.yaml"
    catalog_ = load_catalog_file(shipped, "Asia/Seoul")
    basic = catalog_.plan("basic-monthly")
    assert basic is not None and basic.amount == 9900 and str(basic.interval) == "1 month"
    assert [o.days for o in basic.dunning.retry_after] == [1, 3, 7]
    assert basic.dunning.final_action == FinalAction.CANCEL
    team = catalog_.plan("team-calendar")
    assert team is not None and team.dunning.final_action == FinalAction.PAUSE


def test_the_spec_example_catalog_is_accepted() -> None:
    text = """
timezone: Asia/Seoul
dunning:
  retry_after: [1d, 3d, 7d]
  final_action: cancel
notify:
  - type: log
  - type: webhook
    url: https://merchant.example/billing-events
    secret_env: BILLING_WEBHOOK_SECRET
  - type: email
    smtp_url: smtp://localhost:1025
    from: billing@merchant.example
plans:
  - id: basic-monthly
    name: 베이직 월간 구독
    amount: 9900
    interval: 1 month
    trial_days: 0
  - id: team-calendar
    name: 팀 플랜
    amount: 55000
    cron: "0 10 1 * *"
    prorate_first: true
    card_quota: 3
"""
    parsed = parse_catalog(text, "spec.yaml", "UTC")
    assert [p.id for p in parsed.plans] == ["basic-monthly", "team-calendar"]
    assert [c.type for c in parsed.notify] == ["log", "webhook", "email"]
    assert parsed.notify[2].get("from") == "billing@merchant.example"
    assert parsed.plans[1].card_quota == 3
    assert parsed.zone.key == "Asia/Seoul"


def test_plan_zone_defaults_to_the_catalog_then_to_billing_timezone() -> None:
    text = catalog(GOOD_PLAN + "- {id: b, name: B, amount: 1, interval: 1 day, timezone: UTC}\n")
    plans = parse_catalog(text, "x.yaml", "Europe/Paris").plans
    assert [p.zone.key for p in plans] == ["Europe/Paris", "UTC"]
