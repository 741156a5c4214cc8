"""End to end on real things: PostgreSQL, Redis, a `celery -A workers worker` process, and
the bundled PortOne sandbox over HTTP. The sandbox's ledger is the judge of money moved."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from billing import invariants
from billing.bootstrap import App, build_app
from billing.catalog import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge, Subscription
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import catalog
from billing.services.customers import add_customer
from billing.services.status import outstanding
from billing.services.subscriptions import create_subscription
from schedules.scheduler import Scheduler
from tests.processes import ROOT, WorkerProcess, product_env, wait_for
from workers.config import celery_config
from workers.publisher import CeleryPublisher

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)  # 2027-01-31 00:30 in Seoul
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 2d], final_action: cancel}}
"""


@dataclass
class Product:
    app: App
    clock: DatabaseClock
    scheduler: Scheduler
    worker: WorkerProcess
    sandbox: SandboxServer
    env: dict[str, str]

    def subscribe(self, uid: str, start: datetime = START) -> int:
        with self.app.transaction() as session:
            add_customer(session, uid, start)
            return create_subscription(session, uid, "monthly", start, start).id

    def settle(self, timeout: float = 60) -> None:
        """Run scheduler passes until nothing is due and no charge is open."""

        def done() -> bool:
            self.scheduler.run_pass()
            with self.app.transaction() as session:
                return outstanding(session, self.clock.now()).total == 0

        wait_for(done, timeout, "the product to settle", step=0.2)

    def charges(self) -> list[Charge]:
        with self.app.transaction() as session:
            return list(session.scalars(select(Charge).order_by(Charge.id)))

    def subscription(self, sid: int) -> Subscription:
        with self.app.transaction() as session:
            row = session.get(Subscription, sid)
            assert row is not None
            return row

    def paid_at_sandbox(self) -> list[dict[str, object]]:
        return [p for p in self.sandbox.ledger() if p["status"] == "paid"]

    def anomalies(self) -> list[invariants.Anomaly]:
        with self.app.transaction() as session:
            return invariants.check(session, self.sandbox.ledger(), self.clock.now())


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(port=0, hang_seconds=3.0))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(db_url: str, redis_url: str, sandbox: SandboxServer) -> dict[str, str]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    return {
        "BILLING_DATABASE_URL": db_url, "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox.url, "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "1", "BILLING_RECONCILE_AFTER": "3",
    }  # fmt: skip


@pytest.fixture
def product(env: dict[str, str], sandbox: SandboxServer, tmp_path: Path) -> Iterator[Product]:
    settings = load_settings(env)
    app = build_app(settings)
    assert isinstance(app.clock, DatabaseClock)
    app.clock.set(START)
    with app.transaction() as session:
        catalog.load_catalog(
            session, parse_catalog(CATALOG, "t.yaml", "Asia/Seoul"), "t.yaml", "x", START
        )
    celery = Celery("test-publisher", set_as_current=False)
    celery.conf.update(celery_config(settings))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    product = Product(app, app.clock, Scheduler(app, CeleryPublisher(celery)), worker, sandbox, env)
    yield product
    product.worker.stop()  # the test may have replaced the first worker
    worker.stop()
    app.close()


def test_approved(product: Product) -> None:
    sid = product.subscribe("cust-ok")
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert (charge.status, charge.imp_uid) == ("paid", payment["imp_uid"])
    assert payment["merchant_uid"] == charge.merchant_uid and payment["amount"] == 9900
    assert payment["customer_uid"] == "cust-ok"
    assert product.subscription(sid).next_charge_at == START + timedelta(days=28)
    assert product.anomalies() == []


def test_declined_then_retried_on_schedule(product: Product) -> None:
    sid = product.subscribe("cust-poor")
    product.sandbox.script(customer_uid="cust-poor", behaviors=["decline:잔액부족"])
    product.settle()
    [charge] = product.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "잔액부족")
    sub = product.subscription(sid)
    assert sub.status == "past_due" and sub.next_charge_at == START + timedelta(days=1)
    product.clock.advance(timedelta(days=1))
    product.settle()
    assert [c.status for c in product.charges()] == ["failed", "paid"]
    assert product.subscription(sid).status == "active"
    assert product.anomalies() == []


def test_refused_unknown_customer_moves_no_money(product: Product) -> None:
    product.subscribe("cust-gone")
    product.sandbox.script(customer_uid="cust-gone", behaviors=["unknown_customer"])
    product.settle()
    [charge] = product.charges()
    assert charge.status == "failed" and charge.fail_reason
    assert product.paid_at_sandbox() == []


def test_commit_then_timeout_is_paid_exactly_once(product: Product) -> None:
    product.subscribe("cust-slow")
    product.sandbox.script(customer_uid="cust-slow", behaviors=["commit_then_timeout"])
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert charge.status == "paid" and charge.imp_uid == payment["imp_uid"]
    assert charge.sends == 1  # found by lookup, never sent twice
    assert product.anomalies() == []


def test_commit_then_reset_is_paid_exactly_once(product: Product) -> None:
    product.subscribe("cust-reset")
    product.sandbox.script(customer_uid="cust-reset", behaviors=["commit_then_reset"])
    product.settle()
    [charge] = product.charges()
    assert charge.status == "paid" and len(product.paid_at_sandbox()) == 1


def test_5xx_before_processing_is_sent_again_with_the_same_merchant_uid(product: Product) -> None:
    product.subscribe("cust-5xx")
    product.sandbox.script(customer_uid="cust-5xx", behaviors=["error_500"])
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert charge.status == "paid" and charge.sends == 2
    assert payment["merchant_uid"] == charge.merchant_uid


def test_token_expiry_mid_run(product: Product) -> None:
    for n in range(5):
        product.subscribe(f"cust-t{n}")
    product.sandbox.script(customer_uid="cust-t2", behaviors=["token_expired"])
    product.settle()
    product.sandbox.expire_tokens()
    product.clock.advance(timedelta(days=28))
    product.settle()
    assert [c.status for c in product.charges()] == ["paid"] * 10
    # one token at start, a new one after cust-t2's 401, another after every token expired
    assert product.sandbox.stats()["requests"]["POST /users/getToken"] == 3
    assert product.anomalies() == []


def test_two_scheduler_processes_racing_on_the_same_due_rows(product: Product) -> None:
    for n in range(200):
        product.subscribe(f"cust-r{n:03d}")
    command = [sys.executable, "-m", "billing", "scheduler", "--once"]
    racers = [subprocess.Popen(command, cwd=ROOT, env=product_env(product.env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]  # fmt: skip
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    claimed = [int(out.decode().split()[1].rstrip(",")) for out, _ in outputs]
    assert sum(claimed) == 200
    product.settle()
    charges = product.charges()
    assert len(charges) == 200 and len({c.subscription_id for c in charges}) == 200
    assert len(product.paid_at_sandbox()) == 200
    assert product.anomalies() == []


def test_worker_killed_mid_charge_then_restarted(product: Product, tmp_path: Path) -> None:
    product.subscribe("cust-kill")
    product.sandbox.set_latency(ms=1500)
    product.scheduler.run_pass()
    wait_for(
        lambda: [c.status for c in product.charges()] == ["processing"],
        20,
        "the charge to be in flight",
    )
    product.worker.kill()
    time.sleep(2)  # the sandbox finishes the request its client abandoned
    product.sandbox.set_latency(ms=0)
    product.worker = WorkerProcess(product.env, tmp_path / "worker2.log").start()
    product.settle()
    [charge] = product.charges()
    assert charge.status == "paid"
    assert len(product.paid_at_sandbox()) == 1  # no double charge
    assert product.anomalies() == []


def test_catch_up_after_the_scheduler_was_down_for_months(product: Product) -> None:
    sid = product.subscribe("cust-late")
    product.clock.advance(timedelta(days=95))
    product.settle()
    charges = product.charges()
    assert [c.period_no for c in charges] == [1, 2, 3, 4]
    assert [c.period_start.astimezone(UTC).date().isoformat() for c in charges] == [
        "2027-01-30", "2027-02-27", "2027-03-30", "2027-04-29"]  # fmt: skip
    assert len(product.paid_at_sandbox()) == 4
    assert product.subscription(sid).period_no == 5
    assert product.anomalies() == []


def test_many_charges_with_faults_keep_every_invariant(product: Product) -> None:
    for n in range(60):
        product.subscribe(f"cust-f{n:02d}", START + timedelta(hours=n))
    product.sandbox.set_faults({"error_500": 0.1, "commit_then_timeout": 0.1,
                                "commit_then_reset": 0.05, "decline": 0.1}, seed=3)  # fmt: skip
    product.clock.advance(timedelta(days=3))
    product.settle(timeout=120)
    product.sandbox.set_faults({}, seed=None)
    product.settle(timeout=60)
    assert product.anomalies() == []
    assert len(product.charges()) >= 60


def test_worker_logs_carry_no_token_secret_or_card_data(product: Product, tmp_path: Path) -> None:
    import httpx

    product.subscribe("cust-log")
    product.sandbox.script(customer_uid="cust-log", behaviors=["token_expired", "error_500"])
    product.settle()
    assert [c.status for c in product.charges()] == ["paid"]
    token = httpx.post(f"{product.sandbox.url}/users/getToken",
                       json={"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}).json()["response"]["access_token"]  # fmt: skip
    log = product.worker.log.read_text()
    assert "charge_answer" in log  # the worker did log the exchange
    assert token not in log
    assert "sandbox_secret" not in log
    assert "411111" not in log  # the sandbox's test card
