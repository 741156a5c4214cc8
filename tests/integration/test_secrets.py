"""SPEC 2.7: card data is never stored or logged; imp_secret and access tokens are never logged.

A charge cycle through real processes (a `celery -A workers worker` at DEBUG, a `billing
scheduler`, the `billing` CLI) against the bundled sandbox over HTTP, with credentials of this
test's own, a billing key registered from a card number, tokens expiring and being replaced,
5xx, lost answers and declines. Then every log line, every CLI output and every row of every
table of the database is searched for the secret, every access token the sandbox issued, and
the card's number, birth date and expiry.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

from billing.app import App, build_app
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.sandbox import SandboxConfig, SandboxServer
from billing.sandbox.tokens import IssuedToken
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.status import outstanding
from billing.services.subscriptions import create_subscription
from tests.conftest import snapshot
from tests.processes import ROOT, product_env, wait_for

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 2d], final_action: cancel}}
"""
CARD = "4111-1111-1111-1111"  # the sandbox's test card (Luhn-valid)
BIRTH = "871231"
EXPIRY = "2031-11"
SCRIPTS = {
    "cust-token": ["token_expired", "approve"],
    "cust-5xx": ["error_500"],
    "cust-lost": ["commit_then_timeout"],
    "cust-reset": ["commit_then_reset"],
    "cust-poor": ["decline:잔액부족"],
    "cust-card": [],
}


@dataclass
class Cycle:
    sandbox: SandboxServer
    env: dict[str, str]
    app: App
    tmp: Path
    issued: list[str] = field(default_factory=list)  # every access token the sandbox handed out
    outputs: list[str] = field(default_factory=list)  # what the CLI printed
    processes: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, *command: str) -> Path:
        log = self.tmp / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=product_env(self.env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((process, handle))
        return log

    def billing(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "billing", *args],
            cwd=self.tmp,
            env=product_env(self.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def settle(self, timeout: float = 90) -> None:
        def done() -> bool:
            clock = self.app.clocks.billing
            now = clock.now()
            with self.app.transaction() as session:
                return outstanding(session, now).total == 0

        wait_for(done, timeout, "the product to settle", step=0.2)

    def stop(self) -> None:
        for process, handle in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, 15)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait(10)
            handle.close()


@pytest.fixture
def credentials() -> tuple[str, str]:
    return f"key-{secrets.token_hex(6)}", f"imp-secret-{secrets.token_hex(12)}"


@pytest.fixture
def cycle(
    db_url: str, redis_url: str, tmp_path: Path, credentials: tuple[str, str]
) -> Iterator[Cycle]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    key, secret = credentials
    config = SandboxConfig(
        port=0, imp_key=key, imp_secret=secret, hang_seconds=3, auto_register=True
    )
    server = SandboxServer(config)
    server.start()
    env = {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": server.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_IMP_KEY": key,
        "BILLING_PORTONE_IMP_SECRET": secret,
        "BILLING_PORTONE_TIMEOUT": "1",
        "BILLING_RECONCILE_AFTER": "3",
    }
    app = build_app(load_settings(env))
    run = Cycle(server, env, app, tmp_path)
    issue = server.state.tokens.issue

    def recording_issue() -> IssuedToken:
        token = issue()
        run.issued.append(token.access_token)
        return token

    server.state.tokens.issue = recording_issue  # type: ignore[method-assign]
    yield run
    run.stop()
    app.close()
    server.stop()


def prepare(cycle: Cycle) -> None:
    clock = cycle.app.clocks.billing
    assert isinstance(clock, DatabaseClock)
    clock.set(START)
    with cycle.app.transaction() as session:
        parsed = parse_catalog(CATALOG, "t.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "t.yaml", "x", START)
        for uid in SCRIPTS:
            add_customer(session, uid, START, email=f"{uid}@example.com")
    cycle.billing(
        "customers",
        "register",
        "cust-card",
        "--card-number",
        CARD,
        "--expiry",
        EXPIRY,
        "--birth",
        BIRTH,
        "--pwd-2digit",
        "12",
    )
    with cycle.app.transaction() as session:
        for uid in SCRIPTS:
            create_subscription(session, uid, "monthly", START, START)
    for uid, behaviors in SCRIPTS.items():
        if behaviors:
            cycle.sandbox.script(uid, behaviors)


def test_no_log_line_output_or_row_carries_a_secret_a_token_or_card_data(cycle: Cycle) -> None:
    prepare(cycle)
    worker_log = cycle.spawn(
        "worker",
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-c",
        "4",
        "--loglevel",
        "DEBUG",
        "-n",
        f"secrets-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
    )
    scheduler_log = cycle.spawn(
        "scheduler", sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"
    )
    cycle.settle()
    clock = cycle.app.clocks.billing
    assert isinstance(clock, DatabaseClock)
    clock.advance(timedelta(days=1))  # the declined card's retry
    cycle.settle()
    cycle.sandbox.expire_tokens()  # every token dies: the next calls fetch a new one
    clock.advance(timedelta(days=31))  # renewals
    cycle.settle()
    for args in (
        ("status", "--json"),
        ("charges", "list", "--json"),
        ("subscriptions", "list", "--json"),
        ("subscriptions", "events", "1", "--json"),
    ):
        cycle.billing(*args)
    key, secret = cycle.env["BILLING_PORTONE_IMP_KEY"], cycle.env["BILLING_PORTONE_IMP_SECRET"]
    answer = httpx.post(
        f"{cycle.sandbox.url}/users/getToken", json={"imp_key": key, "imp_secret": secret}
    ).json()
    current = answer["response"]["access_token"]  # the same token the product holds now
    cycle.stop()

    logs = {"worker": worker_log.read_text(), "scheduler": scheduler_log.read_text()}
    rows = repr(snapshot(cycle.env["BILLING_DATABASE_URL"]))
    # The cycle really happened: DEBUG lines, charges paid, tokens replaced, the key registered.
    assert re.search(r'DEBUG/|"level": "debug"|^debug ', logs["worker"], re.MULTILINE)
    assert "charge_answer" in logs["worker"]
    assert rows.count("'paid'") >= 2 * len(SCRIPTS) - 1
    assert current in cycle.issued and len(set(cycle.issued)) >= 3
    assert "billing_key_registered" in rows
    forbidden = {
        "imp_secret": [secret],
        "access token": sorted(set(cycle.issued)),
        "card number": [CARD, CARD.replace("-", ""), CARD.replace("-", " ")],
        "birth date": [BIRTH],
        "card expiry": [EXPIRY, EXPIRY.replace("-", "")],
    }
    places = {**logs, "database": rows, "cli output": "\n".join(cycle.outputs)}
    leaks = [
        f"{what} in the {place}"
        for what, values in forbidden.items()
        for place, text in places.items()
        if any(value in text for value in values)
    ]
    assert leaks == []
