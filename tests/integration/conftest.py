"""Fixtures for end-to-end tests: the product on PostgreSQL and Redis, a real worker process,
and the bundled PortOne sandbox over HTTP. A module may override ``catalog_text`` and
``extra_env``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from billing import invariants
from billing.app import App, build_app
from billing.broker import CeleryPublisher, celery_config
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge, Subscription
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import plan_store
from billing.services.customers import add_customer, find_customer
from billing.services.scheduling import Scheduler
from billing.services.status import outstanding
from billing.services.subscriptions import create_subscription
from tests.processes import WorkerProcess, wait_for

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

    def subscribe(self, uid: str, start: datetime = START, plan: str = "monthly") -> int:
        with self.app.transaction() as session:
            if find_customer(session, uid) is None:
                add_customer(session, uid, start, email=f"{uid}@example.com")
            return create_subscription(session, uid, plan, start, start).id

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
    server = SandboxServer(SandboxConfig(port=0, hang_seconds=3.0, auto_register=True))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(db_url: str, redis_url: str, sandbox: SandboxServer) -> dict[str, str]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    return {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "1",
        "BILLING_RECONCILE_AFTER": "3",
    }


@pytest.fixture
def catalog_text() -> str:
    return CATALOG


@pytest.fixture
def extra_env() -> dict[str, str]:
    return {}


@pytest.fixture
def product(
    env: dict[str, str],
    sandbox: SandboxServer,
    tmp_path: Path,
    catalog_text: str,
    extra_env: dict[str, str],
) -> Iterator[Product]:
    env = {**env, **extra_env}
    settings = load_settings(env)
    app = build_app(settings)
    assert isinstance(app.clocks.billing, DatabaseClock)
    app.clocks.billing.set(START)
    with app.transaction() as session:
        plan_store.load_catalog(
            session, parse_catalog(catalog_text, "t.yaml", "Asia/Seoul"), "t.yaml", "x", START
        )
    celery = Celery("test-publisher", set_as_current=False)
    celery.conf.update(celery_config(settings))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    product = Product(
        app, app.clocks.billing, Scheduler(app, CeleryPublisher(celery)), worker, sandbox, env
    )
    yield product
    product.worker.stop()  # the test may have replaced the first worker
    worker.stop()
    app.close()
