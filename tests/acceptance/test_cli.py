"""The ``billing`` command line, driven in subprocesses against PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner, Result, snapshot

CATALOG = """\
timezone: Asia/Seoul
plans:
  - id: basic-monthly
    name: 베이직 월간 구독
    amount: 9900
    interval: 1 month
  - id: trial-monthly
    name: 체험 월간
    amount: 12000
    interval: 1 month
    trial_days: 14
  - id: pro-yearly
    name: 프로 연간
    amount: 99000
    interval: 1 year
  - id: team-calendar
    name: 팀 플랜
    amount: 55000
    cron: "0 10 1 * *"
"""


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out


def refused(result: Result, *expected: str) -> str:
    assert result.code != 0, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for part in expected:
        assert part in lines[0]
    return lines[0]


def js(result: Result) -> Any:
    return json.loads(ok(result))


@pytest.fixture
def loaded(cli: CliRunner, tmp_path: Path) -> CliRunner:
    (tmp_path / "plans.yaml").write_text(CATALOG)
    ok(cli("plans", "load", "plans.yaml"))
    ok(cli("customers", "add", "cust-1", "--name", "홍길동", "--email", "hong@example.com"))
    return cli


def test_db_upgrade_on_an_empty_postgres_database(fresh_pg_url: str, tmp_path: Path) -> None:
    cli = CliRunner({"BILLING_DATABASE_URL": fresh_pg_url}, tmp_path)
    refused(cli("plans", "list"), "run `billing db upgrade`")
    assert "schema upgraded from empty to" in ok(cli("db", "upgrade"))
    assert "schema already at" in ok(cli("db", "upgrade"))
    assert "basic-monthly" in ok(cli("plans", "list"))  # the shipped catalog, loaded on first use


def test_plans_check_accepts_a_good_file_and_changes_nothing(
    cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "plans.yaml").write_text(CATALOG)
    assert "plans.yaml: ok, 4 plans" in ok(cli("plans", "check", "plans.yaml"))


def test_a_bad_catalog_is_refused_in_one_line_and_the_loaded_one_stays(
    loaded: CliRunner, tmp_path: Path
) -> None:
    bad = CATALOG.replace("amount: 99000", "amount: 99000.5").replace("9900\n", "8800\n")
    (tmp_path / "bad.yaml").write_text(bad)
    refused(loaded("plans", "check", "bad.yaml"), "bad.yaml", "plan 'pro-yearly'", "amount")
    refused(loaded("plans", "load", "bad.yaml"), "bad.yaml", "plan 'pro-yearly'", "amount")
    plans = {p["id"]: p["amount"] for p in js(loaded("plans", "list", "--json"))}
    assert plans == {
        "basic-monthly": 9900,
        "trial-monthly": 12000,
        "pro-yearly": 99000,
        "team-calendar": 55000,
    }
    refused(loaded("plans", "load", "missing.yaml"), "missing.yaml: cannot read")


def test_plans_list_json(loaded: CliRunner) -> None:
    plans = js(loaded("plans", "list", "--json"))
    basic = next(p for p in plans if p["id"] == "basic-monthly")
    assert basic["amount"] == 9900 and basic["interval"] == "1 month" and basic["version"] == 1
    assert basic["dunning"] == {"retry_after": [86400, 259200, 604800], "final_action": "cancel"}


def test_preview_jan_31_for_14_months(loaded: CliRunner) -> None:
    preview = js(
        loaded(
            "plans",
            "preview",
            "basic-monthly",
            "--start",
            "2027-01-31T00:30:00+09:00",
            "--count",
            "14",
            "--json",
        )
    )
    assert [p["at"][:10] for p in preview] == [
        "2027-01-31",
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
        "2027-05-31",
        "2027-06-30",
        "2027-07-31",
        "2027-08-31",
        "2027-09-30",
        "2027-10-31",
        "2027-11-30",
        "2027-12-31",
        "2028-01-31",
        "2028-02-29",
    ]
    assert {p["amount"] for p in preview} == {9900}
    assert all(p["at"].endswith("T00:30:00+09:00") for p in preview)


def test_preview_prorated_cron_plan(loaded: CliRunner) -> None:
    preview = js(
        loaded(
            "plans",
            "preview",
            "team-calendar",
            "--start",
            "2026-01-16T10:00:00+09:00",
            "--count",
            "2",
            "--json",
        )
    )
    assert preview == [
        {"at": "2026-01-16T10:00:00+09:00", "amount": 55000 * 16 // 31},
        {"at": "2026-02-01T10:00:00+09:00", "amount": 55000},
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plans", "preview", "nope"], "unknown plan 'nope'"),
        (["plans", "preview", "basic-monthly", "--count", "0"], "--count"),
        (["plans", "preview", "basic-monthly", "--start", "next tuesday"], "--start"),
        (["plans", "frobnicate"], "No such command"),
        (["plans", "check"], "Missing argument"),
    ],
)
def test_bad_plan_arguments(loaded: CliRunner, args: list[str], expected: str) -> None:
    refused(loaded(*args), expected)


def test_create_show_list_json(loaded: CliRunner) -> None:
    created = js(
        loaded(
            "subscriptions",
            "create",
            "--customer",
            "cust-1",
            "--plan",
            "basic-monthly",
            "--start",
            "2026-01-31T00:30:00+09:00",
            "--json",
        )
    )
    assert created["status"] == "active"
    assert created["customer_uid"] == "cust-1" and created["plan_id"] == "basic-monthly"
    assert created["next_charge_at"] == "2026-01-31T00:30:00+09:00"
    for key in ("id", "current_period_start", "current_period_end"):
        assert key in created
    assert js(loaded("subscriptions", "show", str(created["id"]), "--json")) == created
    assert [s["id"] for s in js(loaded("subscriptions", "list", "--json"))] == [created["id"]]
    assert js(loaded("subscriptions", "list", "--status", "canceled", "--json")) == []
    assert "basic-monthly" in ok(loaded("subscriptions", "list"))


def test_trial_subscription_shows_the_trial_as_its_period(loaded: CliRunner) -> None:
    sub = js(
        loaded(
            "subscriptions",
            "create",
            "--customer",
            "cust-1",
            "--plan",
            "trial-monthly",
            "--start",
            "2026-03-01T09:00:00+09:00",
            "--json",
        )
    )
    assert sub["status"] == "trialing"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        "2026-03-01T09:00:00+09:00",
        "2026-03-15T09:00:00+09:00",
    )
    assert sub["next_charge_at"] == "2026-03-15T09:00:00+09:00"


def test_lifecycle_commands(loaded: CliRunner) -> None:
    sub = js(
        loaded(
            "subscriptions",
            "create",
            "--customer",
            "cust-1",
            "--plan",
            "trial-monthly",
            "--start",
            "2030-03-01T09:00:00+09:00",
            "--json",
        )
    )
    sid = str(sub["id"])
    changed = js(loaded("subscriptions", "change-plan", sid, "--plan", "pro-yearly", "--json"))
    assert changed["plan_id"] == "pro-yearly"  # no charge has begun: the change is immediate
    assert changed["next_charge_at"] == "2030-03-15T09:00:00+09:00"
    paused = js(loaded("subscriptions", "pause", sid, "--json"))
    assert paused["status"] == "paused" and paused["next_charge_at"] is None
    refused(loaded("subscriptions", "pause", sid), "cannot pause a subscription that is paused")
    resumed = js(loaded("subscriptions", "resume", sid, "--json"))
    assert resumed["status"] == "trialing"  # resumed inside the trial: schedule kept
    assert resumed["next_charge_at"] == "2030-03-15T09:00:00+09:00"
    scheduled = js(loaded("subscriptions", "cancel", sid, "--at-period-end", "--json"))
    assert scheduled["status"] == "trialing" and scheduled["cancel_at_period_end"] is True
    canceled = js(loaded("subscriptions", "cancel", sid, "--json"))
    assert canceled["status"] == "canceled" and canceled["next_charge_at"] is None
    refused(loaded("subscriptions", "resume", sid), "cannot resume a subscription that is canceled")


def test_resume_after_a_long_pause_charges_at_once_and_reanchors(loaded: CliRunner) -> None:
    sub = js(
        loaded(
            "subscriptions",
            "create",
            "--customer",
            "cust-1",
            "--plan",
            "basic-monthly",
            "--start",
            "2026-01-31T00:30:00+09:00",
            "--json",
        )
    )
    ok(loaded("subscriptions", "pause", str(sub["id"])))
    resumed = js(loaded("subscriptions", "resume", str(sub["id"]), "--json"))
    assert resumed["status"] == "active"
    assert resumed["next_charge_at"] != "2026-01-31T00:30:00+09:00"  # re-anchored to now
    assert (
        resumed["next_charge_at"] == resumed["started_at"] or resumed["next_charge_at"] > "2026-11"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["subscriptions", "create", "--customer", "nobody", "--plan", "basic-monthly"],
            "unknown customer 'nobody'",
        ),
        (
            ["subscriptions", "create", "--customer", "cust-1", "--plan", "gold"],
            "unknown plan 'gold'",
        ),
        (
            [
                "subscriptions",
                "create",
                "--customer",
                "cust-1",
                "--plan",
                "basic-monthly",
                "--start",
                "31/01/2026",
            ],
            "--start",
        ),
        (["subscriptions", "create", "--plan", "basic-monthly"], "Missing option '--customer'"),
        (
            ["subscriptions", "show", "abc"],
            "'abc' is not a whole number written with the digits 0-9",
        ),
        (
            ["subscriptions", "show", "\u0661\u0662"],
            "is not a whole number written with the digits 0-9",
        ),
        (["subscriptions", "show", "\uff11"], "is not a whole number written with the digits 0-9"),
        (["subscriptions", "show", "99999999999999999999"], "larger than any id"),
        (
            ["charges", "refund", "1", "--reason", "x", "--amount", "1_000"],
            "'1_000' is not a whole number",
        ),
        (["plans", "preview", "basic-monthly", "--count", "\u0663"], "--count"),
        (["subscriptions", "show", "0"], "ID"),
        (["subscriptions", "show", "424242"], "no subscription with id 424242"),
        (["subscriptions", "cancel", "424242"], "no subscription with id 424242"),
        (["subscriptions", "change-plan", "1"], "Missing option '--plan'"),
        (["subscriptions", "list", "--status", "dead"], "--status"),
        (["customers", "add", "cust-1"], "customer 'cust-1' already exists"),
        (["customers", "add", "has space"], "customer_uid 'has space'"),
        (["customers", "add", "x" * 81], "customer_uid"),
        (["customers", "add", "c9", "--email", "not-an-email"], "--email"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    loaded: CliRunner, db_url: str, args: list[str], expected: str
) -> None:
    before = snapshot(db_url)
    refused(loaded(*args), expected)
    assert snapshot(db_url) == before


def test_change_plan_to_an_unknown_plan_changes_nothing(loaded: CliRunner) -> None:
    sub = js(
        loaded(
            "subscriptions", "create", "--customer", "cust-1", "--plan", "basic-monthly", "--json"
        )
    )
    refused(
        loaded("subscriptions", "change-plan", str(sub["id"]), "--plan", "gold"),
        "unknown plan 'gold'",
    )
    assert js(loaded("subscriptions", "show", str(sub["id"]), "--json")) == sub


def test_a_bad_environment_value_is_one_line_naming_the_variable(loaded: CliRunner) -> None:
    refused(
        loaded("plans", "list", env={"BILLING_PORTONE_TIMEOUT": "soon"}), "BILLING_PORTONE_TIMEOUT"
    )
    refused(loaded("plans", "list", env={"BILLING_TIMEZONE": "Moon/Base"}), "BILLING_TIMEZONE")


def test_an_unreachable_database_is_one_line(cli: CliRunner) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    refused(cli("plans", "list", env={"BILLING_DATABASE_URL": url}), "database")


def test_help_and_version(cli: CliRunner) -> None:
    assert "subscriptions" in ok(cli("--help"))
    assert "change-plan" in ok(cli("subscriptions", "--help"))
    assert ok(cli("--version")).startswith("billing, version")


def test_python_dash_m_and_the_embedded_default(tmp_path: Path) -> None:
    cli = CliRunner({}, tmp_path)  # no configuration at all: SQLite in the working directory
    preview = js(cli("plans", "preview", "basic-monthly", "--count", "3", "--json"))
    assert len(preview) == 3 and preview[0]["amount"] == 9900
    assert (tmp_path / "billing.db").exists()
