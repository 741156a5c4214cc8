"""Operating commands in subprocesses: clock, drain, status, charges, scheduler, demo."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import CliRunner

SANDBOX = {"BILLING_SANDBOX": "1"}


def test_the_clock_is_refused_outside_sandbox_mode(cli: CliRunner) -> None:
    refused(cli("clock", "show"), "sandbox mode only")
    refused(cli("clock", "set", "2027-01-01T00:00:00+09:00"), "sandbox mode only")


def test_the_clock_is_shared_through_the_database(cli: CliRunner) -> None:
    assert (
        ok(cli("clock", "set", "2027-01-31T00:30:00+09:00", env=SANDBOX)).strip()
        == "2027-01-31T00:30:00+09:00"
    )
    assert (
        ok(cli("clock", "advance", "1 month", env=SANDBOX)).strip() == "2027-02-28T00:30:00+09:00"
    )
    assert ok(cli("clock", "advance", "36h", env=SANDBOX)).strip() == "2027-03-01T12:30:00+09:00"
    assert ok(cli("clock", "show", env=SANDBOX)).strip() == "2027-03-01T12:30:00+09:00"
    refused(cli("clock", "advance", "soon", env=SANDBOX), "DURATION")
    refused(cli("clock", "set", "yesterday", env=SANDBOX), "TIME")
    sub_env = {**SANDBOX}
    ok(cli("customers", "add", "c1", env=sub_env))
    created = js(
        cli(
            "subscriptions",
            "create",
            "--customer",
            "c1",
            "--plan",
            "basic-monthly",
            "--json",
            env=sub_env,
        )
    )
    assert created["started_at"] == "2027-03-01T12:30:00+09:00"  # "now" is the test clock


def test_drain_and_status(cli: CliRunner) -> None:
    assert "drained" in ok(cli("drain", "--timeout", "1"))
    ok(cli("customers", "add", "c1"))
    ok(
        cli(
            "subscriptions",
            "create",
            "--customer",
            "c1",
            "--plan",
            "basic-monthly",
            "--start",
            "2020-01-01",
        )
    )
    refused(
        cli("drain", "--timeout", "0.5"),
        "not drained after 0.5 s: 1 subscriptions due, 0 charges open",
    )
    status = js(cli("status", "--json"))
    assert status["subscriptions"] == {"active": 1} and status["due_now"] == 1
    assert status["oldest_due_seconds"] > 0
    assert "subscriptions" in ok(cli("status"))


def test_scheduler_needs_a_broker(cli: CliRunner) -> None:
    refused(cli("scheduler", "--once"), "BILLING_BROKER_URL")


def test_charging_without_credentials_is_refused(cli: CliRunner, redis_url: str) -> None:
    env = {"BILLING_BROKER_URL": redis_url}
    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly"))
    refused(cli("run", env=env), "BILLING_PORTONE_IMP_KEY")


def test_charges_list_json(cli: CliRunner) -> None:
    assert js(cli("charges", "list", "--json")) == []
    refused(cli("charges", "list", "--status", "lost"), "--status")
    refused(cli("charges", "list", "--subscription", "x"), "--subscription")


def test_demo_runs_a_short_simulation_and_checks_the_invariants(tmp_path: Path) -> None:
    cli = CliRunner({}, tmp_path)
    result = cli("demo", "--customers", "30", "--days", "45")
    assert result.code == 0, result.out + result.err
    assert "What was charged" in result.out
    assert "gateway paid twice for a period" in result.out
    assert not (tmp_path / "billing.db").exists()  # the demo never touches the working database


def test_billing_log_level_sets_what_the_scheduler_logs(cli: CliRunner, redis_url: str) -> None:
    env = {"BILLING_BROKER_URL": redis_url, "BILLING_SANDBOX": "1"}
    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly"))
    assert "scheduler_pass" in cli("scheduler", "--once", env=env).err  # INFO by default
    quiet = cli("scheduler", "--once", env={**env, "BILLING_LOG_LEVEL": "warning"})
    assert quiet.code == 0 and "claimed 0" in quiet.out and quiet.err == ""
    refused(
        cli("scheduler", "--once", env={**env, "BILLING_LOG_LEVEL": "loud"}),
        "BILLING_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR",
    )


def test_a_cancel_voids_the_charge_waiting_in_the_queue_and_the_history_shows_it(
    cli: CliRunner, redis_url: str, db_url: str
) -> None:
    env = {"BILLING_BROKER_URL": redis_url, "BILLING_SANDBOX": "1"}
    ok(cli("customers", "add", "c1"))
    created = js(
        cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly", "--json")
    )
    assert "claimed 1" in ok(cli("scheduler", "--once", env=env))  # queued; no worker runs
    ok(cli("subscriptions", "cancel", str(created["id"])))
    [charge] = js(cli("charges", "list", "--json"))
    assert (charge["status"], charge["fail_reason"]) == ("failed", "voided: canceled")
    history = ok(cli("subscriptions", "events", str(created["id"])))
    assert "charge_voided" in history and "reason=voided: canceled" in history


def test_status_shows_a_subscription_set_aside_and_why(
    cli: CliRunner, redis_url: str, db_url: str
) -> None:
    from sqlalchemy import create_engine, text

    env = {"BILLING_BROKER_URL": redis_url, "BILLING_SANDBOX": "1"}
    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "premium-yearly"))
    engine = create_engine(db_url)
    with engine.begin() as connection:  # what a race with a catalog load once left behind
        connection.execute(text("UPDATE plans SET archived_at = now() WHERE id = 'premium-yearly'"))
    engine.dispose()
    assert "claimed 0" in ok(cli("scheduler", "--once", env=env))
    shown = ok(cli("status"))
    assert "set aside by the scheduler" in shown
    assert "set aside: subscription 1: no 'premium-yearly' where one was expected" in shown
    assert js(cli("status", "--json"))["set_aside"] == 1


def test_charges_list_shows_the_decline_class(cli: CliRunner, redis_url: str, db_url: str) -> None:
    from sqlalchemy import create_engine, text

    env = {"BILLING_BROKER_URL": redis_url, "BILLING_SANDBOX": "1"}
    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly"))
    assert "claimed 1" in ok(cli("scheduler", "--once", env=env))
    engine = create_engine(db_url)
    with engine.begin() as connection:  # as a worker records PortOne's decline
        connection.execute(
            text(
                "UPDATE charges SET status = 'failed', fail_reason = '분실카드', decline_class = 'hard'"
            )
        )
    engine.dispose()
    header, row = ok(cli("charges", "list")).strip().splitlines()
    assert header.split()[-2:] == ["DECLINE", "REASON"]
    assert row.split()[-2:] == ["hard", "분실카드"]


def test_times_a_person_reads_are_in_the_plans_offset(cli: CliRunner, db_url: str) -> None:
    """Event details and notice bodies (stored in UTC) are shown in Asia/Seoul, +09:00."""
    from sqlalchemy import create_engine, text

    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly"))
    ok(cli("subscriptions", "pause", "1"))
    history = ok(cli("subscriptions", "events", "1"))
    assert "next_charge_at=" in history and "+00:00" not in history, history
    assert history.count("+09:00") >= 3
    details = [e["data"] for e in js(cli("subscriptions", "events", "1", "--json"))]
    assert details[0]["next_charge_at"].endswith("+09:00")
    engine = create_engine(db_url)
    with engine.connect() as connection:
        [body] = connection.execute(text("SELECT payload FROM notices")).scalars()
    engine.dispose()
    assert body["created_at"].endswith("+09:00")


def test_status_links_what_needs_a_person_to_the_console_queues(
    cli: CliRunner, redis_url: str, db_url: str
) -> None:
    from sqlalchemy import create_engine, text

    env = {"BILLING_BROKER_URL": redis_url, "BILLING_SANDBOX": "1"}
    console = {"BILLING_CONSOLE_URL": "https://billing.example/ops/"}
    ok(cli("customers", "add", "c1"))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "premium-yearly"))
    assert "console:" not in ok(cli("status", env=console))  # nothing needs a person yet
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE plans SET archived_at = now() WHERE id = 'premium-yearly'"))
    engine.dispose()
    ok(cli("scheduler", "--once", env=env))
    shown = ok(cli("status", env=console))
    assert (
        "console: set aside by the scheduler: https://billing.example/ops/queues#set-aside" in shown
    )
    links = js(cli("status", "--json", env=console))["console"]
    assert links == {"set aside by the scheduler": "https://billing.example/ops/queues#set-aside"}
    assert "console:" not in ok(cli("status"))  # no address, no link
    refused(
        cli("status", env={"BILLING_CONSOLE_URL": "billing.example/ops"}), "BILLING_CONSOLE_URL"
    )
