"""Unavailable is not misconfigured (issue 18, item 2): a daemon started while PostgreSQL is
unreachable waits, says so in its log and in /readyz, and carries on once the database is
back; a wrong BILLING_DATABASE_URL still exits at once with one line naming it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import CliRunner
from tests.outage import Forwarder
from tests.processes import WorkerProcess, product_env, wait_for

SANDBOX = {"BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": "http://127.0.0.1:9"}


@pytest.fixture
def down_database(db_url: str) -> Iterator[tuple[str, Forwarder]]:
    """The run's database behind a port that refuses connections until ``open()``."""
    real = make_url(db_url)
    forwarder = Forwarder(real.port or 5432)
    yield real.set(port=forwarder.port).render_as_string(hide_password=False), forwarder
    forwarder.close()


def daemon(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "billing", *args],
        cwd=log.parent,
        env=product_env(env),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    return process.wait(30)


def test_serve_starts_without_its_database_and_is_ready_once_it_is_back(
    down_database: tuple[str, Forwarder], tmp_path: Path
) -> None:
    url, forwarder = down_database
    log = tmp_path / "serve.log"
    port = Forwarder(1).port
    web = daemon(["serve", "--port", str(port)], {**SANDBOX, "BILLING_DATABASE_URL": url}, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: b"listening on" in log.read_bytes() or web.poll() is not None, 60, "up")
        assert web.poll() is None, log.read_text()
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("down:"), ready.json()
        assert '"action": "store_unavailable"' in log.read_text()
        assert "BILLING_DATABASE_URL: cannot reach the database" in log.read_text()
        forwarder.open()
        wait_for(lambda: httpx.get(base + "/readyz", timeout=10).status_code == 200, 60, "ready")
    finally:
        assert stop(web) == 0, log.read_text()[-3000:]


def test_the_scheduler_waits_for_its_database_instead_of_exiting(
    down_database: tuple[str, Forwarder], redis_url: str, tmp_path: Path
) -> None:
    url, forwarder = down_database
    log = tmp_path / "scheduler.log"
    env = {**SANDBOX, "BILLING_DATABASE_URL": url, "BILLING_BROKER_URL": redis_url}
    scheduler = daemon(["scheduler", "--interval", "0.2"], env, log)
    try:
        wait_for(lambda: b"store_unavailable" in log.read_bytes(), 60, "the first wait")
        time.sleep(2)
        assert scheduler.poll() is None, log.read_text()
        assert "cannot reach the database" in log.read_text()
        forwarder.open()
        waits = log.read_text().count("store_unavailable")
        time.sleep(4)  # the next try (1, 2, 4 s apart) reaches it; no more waits after that
        assert scheduler.poll() is None, log.read_text()
        assert log.read_text().count("store_unavailable") <= waits + 1
    finally:
        assert stop(scheduler) == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("command", [["status"], ["serve", "--port", "0"]])
def test_a_wrong_database_url_exits_at_once(
    cli: CliRunner, db_url: str, command: list[str]
) -> None:
    wrong = make_url(db_url).set(database="billing_no_such_database").render_as_string(False)
    started = time.monotonic()
    done = cli(*command, env={**SANDBOX, "BILLING_DATABASE_URL": wrong})
    assert time.monotonic() - started < 30
    assert done.code == 1
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("billing: error: BILLING_DATABASE_URL: the database refuses it:")


def test_a_command_names_the_variable_when_the_database_is_down(
    cli: CliRunner, down_database: tuple[str, Forwarder]
) -> None:
    url, _closed = down_database
    done = cli("status", env={"BILLING_DATABASE_URL": url})
    assert done.code == 1
    assert done.err.startswith("billing: error: BILLING_DATABASE_URL: cannot reach the database")


def test_status_warns_when_the_pools_could_exhaust_the_server(cli: CliRunner, db_url: str) -> None:
    """Four open connections of a process whose pool could open 5000 (as `-c 4000` would)."""
    from sqlalchemy import create_engine

    server = js_status(cli)["connections"]
    usable = server["max_connections"] - server["reserved"]
    name = "billing test-host 1 pool=5000"
    engine = create_engine(db_url, connect_args={"application_name": name})
    with engine.connect():
        done = cli("status")
    engine.dispose()
    assert done.code == 0, done.err
    assert (
        "configuration: database: the billing pools could open 50" in done.out
        and f"but PostgreSQL allows {usable} (max_connections" in done.out
    ), done.out


def js_status(cli: CliRunner) -> dict[str, Any]:
    done = cli("status", "--json")
    assert done.code == 0, done.err
    document: dict[str, Any] = json.loads(done.out)
    return document


def test_a_worker_warns_at_start_when_the_pools_could_exhaust_the_server(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine

    env = {**SANDBOX, "BILLING_DATABASE_URL": db_url, "BILLING_BROKER_URL": redis_url}
    engine = create_engine(db_url, connect_args={"application_name": "billing other 1 pool=5000"})
    with engine.connect():
        worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2).start()
        try:
            wait_for(lambda: b"pool_capacity" in worker.log.read_bytes(), 30, "the warning")
            assert "the billing pools could open 50" in worker.log.read_text()
        finally:
            worker.stop()
    engine.dispose()


def test_the_scheduler_rides_out_a_redis_outage(
    cli: CliRunner, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Redis down when the scheduler starts: it stays up, and once Redis is back the due
    charge reaches the queue."""
    import redis

    real = make_url(redis_url)
    forwarder = Forwarder(real.port or 6379)
    broker = real.set(port=forwarder.port).render_as_string(hide_password=False)
    env = {
        **SANDBOX,
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": broker,
        "BILLING_PORTONE_TIMEOUT": "1",
        "BILLING_RECONCILE_AFTER": "3",
    }  # republished soon
    assert cli("customers", "add", "c1").code == 0
    assert cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly").code == 0
    log = tmp_path / "scheduler.log"
    scheduler = daemon(["scheduler", "--interval", "0.2"], env, log)
    queue = redis.Redis.from_url(redis_url)
    queue.delete("billing")  # what earlier tests of this process left in the index is not ours
    try:
        time.sleep(5)
        assert scheduler.poll() is None, log.read_text()[-3000:]
        assert queue.llen("billing") == 0
        forwarder.open()
        wait_for(lambda: queue.llen("billing") > 0 or scheduler.poll() is not None, 60, "Redis")
        assert scheduler.poll() is None
    finally:
        forwarder.close()
        assert stop(scheduler) == 0, log.read_text()[-3000:]
