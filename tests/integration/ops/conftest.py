"""The operator console over real HTTP: ``billing serve``'s app under uvicorn with
BILLING_OPS_AUTH set, the test's own PostgreSQL database, the bundled PortOne sandbox over
HTTP, and the real scheduler and pipeline run in the test's process (no broker) to bring
subscriptions into the states an operator meets."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from billing.app import App, build_app
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge, Event, Notice, Refund, Subscription
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import plan_store
from billing.services.aside import set_aside
from billing.services.catalog_cache import CatalogCache
from billing.services.customers import add_customer
from billing.services.delivery import begin_delivery, finish_delivery
from billing.services.pipeline import Pipeline
from billing.services.scheduling import Scheduler
from billing.services.subscriptions import create_subscription
from billing.web import create_app
from tests.conftest import ROOT
from tests.fakes import ListPublisher
from tests.integration.test_web import SERVE, WebServer, free_socket
from tests.processes import product_env

USER, PASSWORD = "oncall", "correct horse battery"
START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)  # 2027-01-31 00:30 in Seoul
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 2d], final_action: cancel}}
  - {id: nightly-ny, name: 뉴욕 일간, amount: 1000, interval: 1 day, timezone: America/New_York}
"""
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Ops:
    """The served console and what a test needs around it."""

    url: str  # the web process; the console is at url + "/ops"
    app: App
    clock: DatabaseClock
    sandbox: SandboxServer
    env: dict[str, str]
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=30, auth=(USER, PASSWORD))
    )

    @property
    def console(self) -> str:
        return self.url + "/ops"

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.http.get(self.console + path, **options)

    def token(self, page: str) -> str:
        """A CSRF token, read from a page's form as a browser would."""
        found = CSRF.search(self.get(page).text)
        assert found, f"{page} has no form"
        return found.group(1)

    def post(
        self, path: str, data: dict[str, str], *, page: str | None = None, token: bool = True
    ) -> httpx.Response:
        """Submit a form of ``page`` (default: the subscription page of ``path``)."""
        form_page = page or path.rsplit("/", 1)[0]
        body = {"csrf": self.token(form_page), **data} if token else data
        return self.http.post(self.console + path, data=body)

    # -- bringing subscriptions into shape ---------------------------------------------------

    def subscribe(self, uid: str, plan: str = "monthly") -> int:
        now = self.clock.now()
        with self.app.transaction() as session:
            add_customer(session, uid, now, name="홍길동", email=f"{uid}@example.com")
            return create_subscription(session, uid, plan, now, now).id

    def charge_due(self) -> None:
        """One scheduler pass; the worker's job done in this process, at the sandbox."""
        publisher, plans = ListPublisher(), CatalogCache()
        Scheduler(self.app, publisher, plans).run_pass()
        client = PortOneClient(self.sandbox.url, "sandbox_key", "sandbox_secret", timeout=10)
        try:
            pipeline = Pipeline(self.app, PortOneGateway(client), publisher, plans)
            for charge_id in publisher.take()[0]:
                pipeline.charge(charge_id)
        finally:
            client.close()

    def paid(self, uid: str, plan: str = "monthly") -> tuple[int, Charge]:
        sid = self.subscribe(uid, plan)
        self.charge_due()
        charge = self.charges(sid)[-1]
        assert charge.status == "paid", charge.status
        return sid, charge

    def past_due(self, uid: str) -> int:
        sid = self.subscribe(uid)
        self.sandbox.script(uid, ["decline:잔액부족"])
        self.charge_due()
        assert self.subscription(sid).status == "past_due"
        return sid

    def unknown(self, uid: str) -> tuple[int, Charge]:
        """PortOne took the charge and its answer was lost (the connection was reset)."""
        sid = self.subscribe(uid)
        self.sandbox.script(uid, ["commit_then_reset"])
        self.charge_due()
        charge = self.charges(sid)[-1]
        assert charge.status == "unknown", charge.status
        return sid, charge

    def set_aside(self, sid: int, reason: str) -> None:
        with self.app.transaction() as session:
            set_aside(session, sid, reason, self.clock.now(), datetime.now(UTC))

    def failing_notice(self, sid: int, error: str) -> Notice:
        """The subscription's first notice, tried once by a worker and refused."""
        wall = datetime.now(UTC)
        with self.app.transaction() as session:
            notice = session.scalars(
                select(Notice).where(Notice.subscription_id == sid).order_by(Notice.id)
            ).first()
            assert notice is not None
            work = begin_delivery(session, notice.id, wall)
            assert work is not None
            finish_delivery(session, work, error, self.clock.now(), wall)
            return notice

    def advance(self, delta: timedelta) -> None:
        self.clock.set(self.clock.now() + delta)

    # -- reading what happened ---------------------------------------------------------------

    def subscription(self, sid: int) -> Subscription:
        with self.app.transaction() as session:
            row = session.get(Subscription, sid)
            assert row is not None
            return row

    def charges(self, sid: int) -> list[Charge]:
        with self.app.transaction() as session:
            query = select(Charge).where(Charge.subscription_id == sid).order_by(Charge.id)
            return list(session.scalars(query))

    def count_charges(self, status: str) -> int:
        with self.app.transaction() as session:
            query = select(func.count()).select_from(Charge).where(Charge.status == status)
            return int(session.scalar(query) or 0)

    def days_with(self, status: str) -> set[date]:
        """The days (in Seoul, BILLING_TIMEZONE) on which a charge was attempted and ended so."""
        seoul = ZoneInfo("Asia/Seoul")
        with self.app.transaction() as session:
            query = select(Charge.created_at).where(Charge.status == status)
            return {moment.astimezone(seoul).date() for moment in session.scalars(query)}

    def refunds(self, charge_id: int) -> list[Refund]:
        with self.app.transaction() as session:
            query = select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.id)
            return list(session.scalars(query))

    def notice(self, notice_id: int) -> Notice:
        with self.app.transaction() as session:
            row = session.get(Notice, notice_id)
            assert row is not None
            return row

    def events(self, sid: int) -> list[tuple[str, str | None, str | None]]:
        """(kind, actor, reason) of every event of the subscription, oldest first."""
        with self.app.transaction() as session:
            query = select(Event).where(Event.subscription_id == sid).order_by(Event.id)
            return [
                (e.kind, e.data.get("actor"), e.data.get("reason")) for e in session.scalars(query)
            ]


def ops_environment(db_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_PORTONE_URL": sandbox_url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "10",
        "BILLING_RECONCILE_AFTER": "300",
        "BILLING_OPS_AUTH": f"{USER}:{PASSWORD}",
    }


@contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """``billing serve``'s app for ``env`` under uvicorn in this process: its URL, until the
    block ends."""
    web = WebServer(free_socket()).start(create_app(load_settings(env), environ=env))
    try:
        yield web.url
    finally:
        web.stop()


def refused_start(env: dict[str, str]) -> list[str]:
    """``billing serve`` run in a process of its own with ``env``, which must exit 1 at once:
    the lines it wrote to stderr."""
    done = subprocess.run(
        [sys.executable, "-c", SERVE, "serve", "--port", "0"],
        cwd=ROOT,
        env=product_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().splitlines()


@pytest.fixture
def ops_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(port=0, hang_seconds=2, auto_register=True))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ops(db_url: str, ops_sandbox: SandboxServer) -> Iterator[Ops]:
    env = ops_environment(db_url, ops_sandbox.url)
    settings = load_settings(env)
    app = build_app(settings)
    assert isinstance(app.clocks.billing, DatabaseClock)
    app.clocks.billing.set(START)
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "t.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "t.yaml", "x", START)
    with served(env) as url:
        console = Ops(url, app, app.clocks.billing, ops_sandbox, env)
        yield console
        console.http.close()
    app.close()
