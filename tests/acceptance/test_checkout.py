"""``billing checkout-params`` in subprocesses: the IMP.request_pay parameters for a plan."""

from __future__ import annotations

import re
from pathlib import Path

from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import CliRunner

SITE = {
    "BILLING_PORTONE_SITE_CODE": "T0000",
    "BILLING_CHECKOUT_REDIRECT_URL": "https://merchant.example/billing/return",
}
PAGE = {**SITE, "BILLING_PORTONE_MERCHANT_CODE": "imp12345678"}
README = Path(__file__).resolve().parents[2] / "README.md"
MERCHANT_UID = re.compile(r"^issue-[0-9a-f]{20}$")


def test_parameters_for_a_known_customer(cli: CliRunner) -> None:
    ok(
        cli(
            "customers",
            "add",
            "cust-1",
            "--name",
            "홍길동",
            "--email",
            "hong@example.com",
            "--phone",
            "010-1234-5678",
        )
    )
    params = js(
        cli(
            "checkout-params", "--customer", "cust-1", "--plan", "basic-monthly", "--json", env=SITE
        )
    )
    assert MERCHANT_UID.match(params.pop("merchant_uid"))
    assert params == {
        "pg": "kcp_billing.T0000",
        "pay_method": "card",
        "name": "베이직 월간 구독 정기결제 등록",
        "amount": 0,
        "customer_uid": "cust-1",
        "buyer_name": "홍길동",
        "buyer_email": "hong@example.com",
        "buyer_tel": "010-1234-5678",
        "m_redirect_url": "https://merchant.example/billing/return",
    }


def test_every_call_names_a_new_key_issuing_request(cli: CliRunner) -> None:
    args = ("checkout-params", "--customer", "new-1", "--plan", "basic-monthly", "--json")
    first, second = js(cli(*args, env=SITE)), js(cli(*args, env=SITE))
    assert first["merchant_uid"] != second["merchant_uid"]
    assert first["customer_uid"] == "new-1"  # the one given, even before `customers add`
    assert (first["buyer_name"], first["buyer_email"], first["buyer_tel"]) == (None, None, None)


def test_a_long_plan_name_is_cut_to_fit_portone(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "plans.yaml").write_text(
        "plans:\n  - {id: long, name: " + "가" * 40 + ", amount: 1000, interval: 1 month}\n"
    )
    ok(cli("plans", "load", "plans.yaml"))
    params = js(cli("checkout-params", "--customer", "c", "--plan", "long", "--json", env=SITE))
    assert params["name"] == "가" * 32 + " 정기결제 등록" and len(params["name"]) == 40


def test_without_json_the_page_the_readme_shows(cli: CliRunner) -> None:
    """The README's commands, run as written, print its HTML block (but the merchant_uid)."""
    text = README.read_text()
    section = text[text.index("**On your page**") : text.index("The callback is no proof")]
    shell, page = re.findall(r"```(?:sh|html)\n(.*?)```", section, re.DOTALL)
    commands = [line.split() for line in shell.splitlines() if line.startswith("billing ")]
    env = dict(
        pair.split("=", 1)
        for line in shell.splitlines()
        if line.startswith("export ")
        for pair in line.split()[1:]
    )
    assert env == PAGE
    for command in commands[:-1]:
        ok(cli(*command[1:], env=env))
    out = ok(cli(*commands[-1][1:], env=env))
    shown = re.search(r'"merchant_uid": "(issue-[0-9a-f]{20})"', page)
    printed = re.search(r'"merchant_uid": "(issue-[0-9a-f]{20})"', out)
    assert shown and printed
    assert out == page.replace(shown.group(1), printed.group(1))


def test_the_page_leaves_out_what_has_no_value(cli: CliRunner) -> None:
    env = {**PAGE, "BILLING_CHECKOUT_REDIRECT_URL": ""}
    out = ok(cli("checkout-params", "--customer", "new-2", "--plan", "basic-monthly", env=env))
    assert "m_redirect_url" not in out and "buyer_email" not in out and "null" not in out
    flag = ok(
        cli(
            "checkout-params",
            "--customer",
            "new-2",
            "--plan",
            "basic-monthly",
            "--redirect-url",
            "https://shop.example/return",
            env=env,
        )
    )
    assert '"m_redirect_url": "https://shop.example/return"' in flag
    params = js(
        cli(
            "checkout-params",
            "--customer",
            "new-2",
            "--plan",
            "basic-monthly",
            "--json",
            env={"BILLING_PORTONE_SITE_CODE": "T0000"},
        )
    )
    assert params["m_redirect_url"] is None  # no merchant code needed for --json


def test_refusals(cli: CliRunner) -> None:
    refused(
        cli("checkout-params", "--customer", "c", "--plan", "basic-monthly", env=SITE),
        "BILLING_PORTONE_MERCHANT_CODE: not set",
    )
    refused(
        cli(
            "checkout-params",
            "--customer",
            "c",
            "--plan",
            "basic-monthly",
            "--json",
            "--redirect-url",
            "javascript:alert(1)",
            env=PAGE,
        ),
        "--redirect-url",
    )
    refused(
        cli("checkout-params", "--customer", "c", "--plan", "basic-monthly"),
        "BILLING_PORTONE_SITE_CODE",
    )
    refused(
        cli("checkout-params", "--customer", "c", "--plan", "nope", env=SITE), "unknown plan 'nope'"
    )
    refused(
        cli("checkout-params", "--customer", "a/b", "--plan", "basic-monthly", env=SITE),
        "customer_uid 'a/b'",
    )
    refused(cli("checkout-params", "--plan", "basic-monthly", env=SITE), "--customer")
