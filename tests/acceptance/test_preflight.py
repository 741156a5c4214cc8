"""Wrong configuration fails at start, as a user sees it: the real command in a subprocess
exits 1 with one line naming the variable, instead of starting and failing every task later
(issue 18, items 1 and 3; issue 14, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliRunner, snapshot

ROOT = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = "BILLING_PORTONE_IMP_KEY: no PortOne credentials, so nothing is charged"
NO_SANDBOX = "BILLING_PORTONE_URL: sandbox mode needs a sandbox to charge"


def product(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "FLOWER_"))}
    return subprocess.run(
        [sys.executable, "-m", *command],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


WORKER = ["celery", "-A", "workers", "worker", "-c", "1", "--without-mingle", "--without-gossip"]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({}, NO_CREDENTIALS),
        ({"BILLING_PORTONE_IMP_KEY": "k"}, NO_CREDENTIALS),  # a key without its secret
        ({"BILLING_SANDBOX": "1"}, NO_SANDBOX),
        (
            {
                "BILLING_SANDBOX": "1",
                "BILLING_PORTONE_URL": "http://127.0.0.1:9",
                "BILLING_PLANS": "/nonexistent.yaml",
            },
            "BILLING_PLANS: /nonexistent.yaml: cannot read",
        ),
    ],
)
def test_a_worker_that_could_not_charge_does_not_start(
    db_url: str, redis_url: str, tmp_path: Path, extra: dict[str, str], error: str
) -> None:
    env = {"BILLING_DATABASE_URL": db_url, "BILLING_BROKER_URL": redis_url, **extra}
    done = product(WORKER, env, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert last_line(done).startswith(f"billing: error: {error}"), done.stderr[-2000:]


def test_a_worker_without_a_broker_does_not_start(db_url: str, tmp_path: Path) -> None:
    env = {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_URL": "http://127.0.0.1:9",
    }
    done = product(WORKER, env, tmp_path)
    assert done.returncode == 1
    assert last_line(done).startswith("billing: error: BILLING_BROKER_URL: not set")


def test_the_scheduler_refuses_a_catalog_it_cannot_read(
    cli: CliRunner, redis_url: str, tmp_path: Path
) -> None:
    env = {"BILLING_BROKER_URL": redis_url, "BILLING_PLANS": str(tmp_path / "nonexistent.yaml")}
    done = cli("scheduler", env=env)
    assert done.code == 1
    assert done.err.strip() == (
        f"billing: error: BILLING_PLANS: {tmp_path}/nonexistent.yaml: cannot read: "
        "No such file or directory"
    )


def test_the_scheduler_refuses_an_invalid_catalog(
    cli: CliRunner, redis_url: str, tmp_path: Path
) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text("plans:\n  - {id: p, name: P, amount: -1, interval: 1 month}\n")
    done = cli(
        "scheduler", "--once", env={"BILLING_BROKER_URL": redis_url, "BILLING_PLANS": str(plans)}
    )
    assert done.code == 1
    assert done.err.startswith(f"billing: error: BILLING_PLANS: {plans}: plan 'p': amount")
    assert len(done.err.strip().splitlines()) == 1


def test_serve_without_portone_credentials_does_not_start(cli: CliRunner) -> None:
    done = cli("serve", "--port", "0")
    assert done.code == 1
    assert done.err.strip().startswith(f"billing: error: {NO_CREDENTIALS}")


def test_status_names_what_would_stop_the_workers(cli: CliRunner) -> None:
    done = cli("status")
    assert done.code == 0, done.err
    assert f"configuration: worker, web: {NO_CREDENTIALS}" in done.out
    assert "configuration: worker, scheduler: BILLING_BROKER_URL: not set" in done.out
    ready = cli(
        "status",
        env={
            "BILLING_SANDBOX": "1",
            "BILLING_PORTONE_URL": "http://x.test",
            "BILLING_BROKER_URL": "redis://127.0.0.1:6379/15",
        },
    )
    assert ready.out.strip().splitlines()[-1] == "configuration: ok"


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("BILLING_PORTONE_SITE_CODE", 'bad code!"', "must be a KCP site code"),
        ("BILLING_PORTONE_SITE_CODE", "A52CY\nX", "must be a KCP site code"),
        ("BILLING_PORTONE_URL", "http://sandbox.test\n/x", "must be one URL without spaces"),
        ("BILLING_PORTONE_MERCHANT_CODE", "imp12x", "must be PortOne's merchant code"),
        ("BILLING_CHECKOUT_REDIRECT_URL", "javascript:alert(1)", "must be an http:// or https://"),
    ],
)
def test_a_value_that_would_fail_later_is_refused_at_start(
    cli: CliRunner, variable: str, value: str, error: str
) -> None:
    done = cli("status", env={variable: value})
    assert done.code == 1
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"billing: error: {variable}: {error}"), lines


# -- values that used to end in exit 70 (issue 14, item 8) -----------------------------------

HUGE = "9" * 5001
LAST_SECOND = "9999-12-31T23:59:59+00:00"
FIRST_DAY = "0001-01-01T00:00:00+09:00"


@pytest.mark.parametrize(
    "plan",
    [
        f"{{id: p, name: P, amount: {HUGE}, interval: 1 month}}",
        f"{{id: p, name: P, amount: 100, interval: 1 month, trial_days: {HUGE}}}",
    ],
)
def test_a_catalog_with_a_5001_digit_number_is_refused_in_one_line(
    cli: CliRunner, db_url: str, tmp_path: Path, plan: str
) -> None:
    before = snapshot(db_url)
    (tmp_path / "huge.yaml").write_text(f"plans:\n  - {plan}\n")
    done = cli("plans", "load", "huge.yaml")
    refusal = "billing: error: huge.yaml: not valid YAML: a number longer than 4300 digits\n"
    assert (done.code, done.err) == (1, refusal)
    assert snapshot(db_url) == before


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (("set", LAST_SECOND), f"TIME: {LAST_SECOND!r} is not a time between 1970 and 2999"),
        (("set", FIRST_DAY), f"TIME: {FIRST_DAY!r} is not a time between 1970 and 2999"),
        (("advance", "9000 years"), "DURATION '9000 years' would move the clock past 2999"),
    ],
)
def test_a_clock_beyond_what_the_product_can_compute_is_refused(
    cli: CliRunner, command: tuple[str, ...], error: str
) -> None:
    sandbox = {"BILLING_SANDBOX": "1"}
    before = cli("clock", "set", "2027-01-31T00:30:00+09:00", env=sandbox).out
    done = cli("clock", *command, env=sandbox)
    assert (done.code, done.err) == (1, f"billing: error: {error}\n")
    assert cli("clock", "show", env=sandbox).out == before  # nothing changed


def test_a_worker_with_a_wrong_database_url_does_not_start(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    wrong = make_url(db_url).set(database="billing_no_such_database")
    env = {
        "BILLING_DATABASE_URL": wrong.render_as_string(hide_password=False),
        "BILLING_BROKER_URL": redis_url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_URL": "http://127.0.0.1:9",
    }
    done = product(WORKER, env, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert last_line(done).startswith(
        "billing: error: BILLING_DATABASE_URL: the database refuses it:"
    ), done.stderr[-2000:]
