"""The web process over real HTTP: uvicorn serving the app on a free port, the test's own
PostgreSQL database and Redis index, and the bundled PortOne sandbox sending its webhooks
(notice_url) to us. `billing serve` itself runs as a subprocess in the last tests."""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select, text, update

from billing import invariants
from billing.app import App, build_app
from billing.catalog_file import load_zone, parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db import migrate
from billing.db.engine import make_engine
from billing.db.tables import Charge, Event, Subscription
from billing.db.tables import Notice as NoticeRow
from billing.domain.charges import ChargeRequest
from billing.domain.durations import parse_interval
from billing.domain.plans import Plan
from billing.portone.answers import Exchange, Transport
from billing.portone.client import PortOneClient
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.metrics import MonthlyRates, monthly_amount, mrr
from billing.services.portone_webhook import (
    Payment,
    PortoneWebhook,
    Verdict,
    WebhookResult,
    read_payment,
)
from billing.services.scheduling import Scheduler
from billing.services.subscriptions import create_subscription
from billing.web import WebConfig, create_app
from billing.web.config import parse_allowlist
from billing.web.listener import address, listen
from billing.web.server import server_config
from billing.web.webhook import webhook_fields
from tests.conftest import create_database, drop_database
from tests.fakes import ListPublisher, envelope
from tests.processes import ROOT, WorkerProcess, product_env, wait_for

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 2d], final_action: cancel}}
  - {id: yearly, name: 연간, amount: 99000, interval: 1 year}
  - {id: weekly, name: 주간, amount: 7000, interval: 1 week}
  - {id: calendar, name: 달력, amount: 55000, cron: "0 10 1 * *", prorate_first: false}
"""
WEBHOOK = "/portone/webhook"


def free_socket() -> socket.socket:
    return listen("127.0.0.1", 0)


class WebServer:
    """The app under uvicorn in a thread, on a socket bound before the sandbox needs its URL."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.url = address(listener)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, web: Any, forwarded_allow_ips: str | None = None) -> WebServer:
        """Run as ``billing serve`` runs it (``server_config``)."""
        self.server = uvicorn.Server(server_config(web, forwarded_allow_ips=forwarded_allow_ips))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True
        )
        self.thread.start()
        wait_for(lambda: self.server is not None and self.server.started, 10, "uvicorn")
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
        self.listener.close()


@dataclass
class World:
    """Database, sandbox and web process; the scheduler publishes to a list (no worker)."""

    app: App
    clock: DatabaseClock
    sandbox: SandboxServer
    web: WebServer
    env: dict[str, str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    publisher: ListPublisher = field(default_factory=ListPublisher)

    @property
    def scheduler(self) -> Scheduler:
        return Scheduler(self.app, self.publisher)

    def subscribe(self, uid: str, plan: str = "monthly", start: datetime = START) -> int:
        with self.app.transaction() as session:
            add_customer(session, uid, start)
            return create_subscription(session, uid, plan, start, start).id

    def charge_of(self, sid: int) -> Charge:
        with self.app.transaction() as session:
            charges = session.scalars(select(Charge).where(Charge.subscription_id == sid)).all()
            assert len(charges) == 1, charges
            return charges[0]

    def subscription(self, sid: int) -> Subscription:
        with self.app.transaction() as session:
            row = session.get(Subscription, sid)
            assert row is not None
            return row

    def unknown_charge(self, uid: str) -> Charge:
        """A claimed charge whose answer was lost: unknown, next lookup an hour away."""
        sid = self.subscribe(uid)
        self.scheduler.run_pass()
        wall = datetime.now(UTC)
        with self.app.transaction() as session:
            session.execute(
                update(Charge)
                .where(Charge.subscription_id == sid)
                .values(
                    status="unknown",
                    sends=1,
                    sent_at=wall,
                    updated_at=wall,
                    next_lookup_at=wall + timedelta(hours=1),
                )
            )
        return self.charge_of(sid)

    def pay_at_sandbox(self, charge: Charge, amount: int | None = None, notify: bool = True) -> str:
        """What the lost request did: PortOne charged the merchant_uid. Returns the imp_uid.
        ``notify=False`` sends the sandbox's own webhook to a closed port instead of to us."""
        request = ChargeRequest(
            charge.customer_uid, charge.merchant_uid, amount or charge.amount, charge.name
        )
        return self.pay(request, notify)

    def pay(self, request: ChargeRequest, notify: bool = True) -> str:
        client = PortOneClient(self.sandbox.url, "sandbox_key", "sandbox_secret")
        token = client.token()
        client.close()
        body = request.body()
        if not notify:
            body["notice_url"] = "http://127.0.0.1:9/nobody"
        answer = httpx.post(
            f"{self.sandbox.url}/subscribe/payments/again",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert answer["code"] == 0 and answer["response"]["status"] == "paid", answer
        return str(answer["response"]["imp_uid"])

    def post_webhook(self, **fields: object) -> httpx.Response:
        return self.http.post(self.web.url + WEBHOOK, json=fields)

    def events(self, charge_id: int, kind: str | None = None) -> list[Event]:
        with self.app.transaction() as session:
            query = select(Event).where(Event.charge_id == charge_id).order_by(Event.id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return list(session.scalars(query))


def product_environment(db_url: str, redis_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox_url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "5",
        "BILLING_RECONCILE_AFTER": "300",
    }


@pytest.fixture
def world(db_url: str, redis_url: str) -> Iterator[World]:
    listener = free_socket()
    web = WebServer(listener)
    config = SandboxConfig(port=0, hang_seconds=8, notice_url=web.url + WEBHOOK, auto_register=True)
    sandbox = SandboxServer(config)
    sandbox.start()
    env = product_environment(db_url, redis_url, sandbox.url)
    settings = load_settings(env)
    app = build_app(settings)
    assert isinstance(app.clocks.billing, DatabaseClock)
    app.clocks.billing.set(START)
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "t.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "t.yaml", "x", START)
    web.start(create_app(settings))
    world = World(app, app.clocks.billing, sandbox, web, env)
    yield world
    world.http.close()
    web.stop()
    sandbox.stop()
    app.close()


def serve_app(
    settings_env: dict[str, str], config: WebConfig | None = None, forwarded: str | None = None
) -> WebServer:
    web = create_app(load_settings(settings_env), config)
    return WebServer(free_socket()).start(web, forwarded)


# -- health and readiness -------------------------------------------------------------------


def test_healthz_and_readyz(world: World) -> None:
    alive = world.http.get(world.web.url + "/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
    ready = world.http.get(world.web.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "broker": "ok",
        "configuration": "ok",
    }


def test_readyz_is_503_and_names_the_variable_when_the_catalog_goes_missing(
    world: World, tmp_path: Path
) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(CATALOG)
    server = serve_app({**world.env, "BILLING_PLANS": str(plans)})
    try:
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
        plans.unlink()
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["configuration"] == (
            f"BILLING_PLANS: {plans}: cannot read: No such file or directory"
        )
    finally:
        server.stop()


def test_readyz_is_503_and_names_the_broker_when_it_is_down(world: World) -> None:
    with free_socket() as closed:
        dead = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
    server = serve_app({**world.env, "BILLING_BROKER_URL": dead})
    try:
        started = time.monotonic()
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert time.monotonic() - started < 3
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready" and body["database"] == "ok"
        assert body["broker"].startswith("down:"), body
        assert httpx.get(server.url + "/healthz").status_code == 200  # alive all the same
    finally:
        server.stop()


# -- metrics ---------------------------------------------------------------------------------


def scrape(world: World) -> dict[str, float]:
    """``{"name{labels}": value}`` from the exposition text (comments skipped)."""
    answer = world.http.get(world.web.url + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, float] = {}
    for line in answer.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def add_notice(world: World, n: int, status: str) -> None:
    wall = datetime.now(UTC)
    with world.app.transaction() as session:
        session.add(
            NoticeRow(
                event_id=f"evt-{status}-{n}",
                dedupe_key=f"test-{status}-{n}",
                kind="payment_failed",
                channel="log",
                channel_config={},
                payload={},
                status=status,
                attempts=0,
                next_attempt_at=wall,
                created_at=START,
                updated_at=wall,
            )
        )


def test_metrics_are_what_the_database_holds(world: World) -> None:
    # Five monthly subscriptions due at START, claimed: one charge each, then set by hand to
    # every charge status. Two more due two hours before the clock and never claimed.
    sids = [world.subscribe(f"cust-m{n}") for n in range(5)]
    world.scheduler.run_pass()
    with world.app.transaction() as session:
        for sid, status in zip(
            sids, ["paid", "failed", "unknown", "processing", "pending"], strict=True
        ):
            session.execute(
                update(Charge).where(Charge.subscription_id == sid).values(status=status)
            )
        session.execute(
            update(Subscription)
            .where(Subscription.id == sids[1])
            .values(status="past_due", next_charge_at=START + timedelta(days=1))
        )
    late = [
        world.subscribe(f"cust-late{n}", start=START - timedelta(hours=2 - n)) for n in range(2)
    ]
    yearly = world.subscribe("cust-y", "yearly", START + timedelta(days=3))
    world.subscribe("cust-w", "weekly", START + timedelta(days=3))
    world.subscribe("cust-c", "calendar", START + timedelta(days=3))
    canceled = world.subscribe("cust-x", "yearly", START + timedelta(days=3))
    with world.app.transaction() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.id == canceled)
            .values(status="canceled", next_charge_at=None)
        )
        session.execute(
            update(Subscription)
            .where(Subscription.id == yearly)
            .values(status="past_due", next_charge_at=None)
        )
    for n in range(3):
        add_notice(world, n, "pending")
    add_notice(world, 9, "delivered")

    samples = scrape(world)

    with world.app.transaction() as session:
        by_status: dict[str, int] = dict(
            session.execute(text("SELECT status, count(*) FROM charges GROUP BY status")).all()
        )
        subs: dict[str, int] = dict(
            session.execute(
                text("SELECT status, count(*) FROM subscriptions GROUP BY status")
            ).all()
        )
    for status in ("pending", "processing", "paid", "failed", "unknown"):
        assert samples[f'billing_charges{{status="{status}"}}'] == by_status.get(status, 0) == 1
    for status in ("trialing", "active", "past_due", "paused", "canceled"):
        assert samples[f'billing_subscriptions{{status="{status}"}}'] == subs.get(status, 0)
    assert subs == {"active": 8, "past_due": 2, "canceled": 1}
    assert samples["billing_due_unclaimed_subscriptions"] == len(late) == 2
    assert samples["billing_oldest_due_age_seconds"] == 2 * 3600
    assert samples["billing_unknown_charges"] == 1
    assert samples["billing_dunning_backlog_subscriptions"] == 1  # the yearly one has no retry
    assert samples["billing_notices_pending"] == 3
    # active + past_due: 7 monthly (one past due) x 9900, yearly 99000 / 12 (past due),
    # weekly 7000 x (146097 / 4800) / 7, calendar 55000 x 1 (fires once a month); floor of
    # the exact sum. Canceled and charges' states do not count.
    exact = 7 * 9900 + Fraction(99000, 12) + Fraction(7000 * 146097, 4800 * 7) + 55000
    assert samples["billing_mrr_krw"] == int(exact) == 162_986


def test_oldest_due_age_counts_claimed_charges_nobody_sent(world: World) -> None:
    world.subscribe("cust-wait")
    world.scheduler.run_pass()  # claimed at START; the list publisher delivers nothing
    world.clock.advance(timedelta(minutes=10))
    samples = scrape(world)
    assert samples["billing_due_unclaimed_subscriptions"] == 0
    assert samples["billing_oldest_due_age_seconds"] == 600


def test_metrics_and_readyz_503_when_the_database_is_gone(world: World) -> None:
    url = create_database("billing_web_gone")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    server = serve_app({**world.env, "BILLING_DATABASE_URL": url})
    try:
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
        drop_database(url)  # WITH (FORCE): the pooled connections are cut too
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 503
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("down:") and ready.json()["broker"] == "ok"
    finally:
        server.stop()
        drop_database(url)


# -- the webhook -----------------------------------------------------------------------------


def test_webhook_settles_an_unknown_charge_long_before_reconciliation(world: World) -> None:
    charge = world.unknown_charge("cust-lost")
    next_lookup = charge.next_lookup_at
    assert next_lookup is not None and next_lookup > datetime.now(UTC) + timedelta(minutes=59)
    paid_at = time.monotonic()
    imp_uid = world.pay_at_sandbox(charge)  # the sandbox posts its webhook to us
    wait_for(lambda: world.charge_of(charge.subscription_id).status == "paid", 5, "the webhook")
    elapsed = time.monotonic() - paid_at
    settled = world.charge_of(charge.subscription_id)
    assert settled.imp_uid == imp_uid and settled.paid_at == START
    assert elapsed < 2, elapsed  # the scheduler would have looked an hour from now
    sub = world.subscription(charge.subscription_id)
    assert sub.status == "active" and sub.period_no == 2
    [event] = world.events(charge.id, "portone_notice")
    assert event.data["verdict"] == "settled" and event.data["imp_uid"] == imp_uid
    assert len(world.events(charge.id, "charge_paid")) == 1
    with world.app.transaction() as session:
        assert invariants.check(session, world.sandbox.ledger(), START) == []


def test_redelivered_webhook_changes_nothing(world: World) -> None:
    charge = world.unknown_charge("cust-twice")
    imp_uid = world.pay_at_sandbox(charge, notify=False)
    first = world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid, status="paid")
    assert (first.status_code, first.json()["result"]) == (200, "settled")
    before = world.charge_of(charge.subscription_id)
    events = len(world.events(charge.id))
    for _ in range(3):
        again = world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid, status="paid")
        assert (again.status_code, again.json()["result"]) == (200, "already_paid")
    after = world.charge_of(charge.subscription_id)
    assert (after.status, after.imp_uid, after.updated_at) == ("paid", imp_uid, before.updated_at)
    assert len(world.events(charge.id)) == events
    assert world.subscription(charge.subscription_id).period_no == 2


def test_form_encoded_webhook(world: World) -> None:
    charge = world.unknown_charge("cust-form")
    imp_uid = world.pay_at_sandbox(charge, notify=False)
    answer = world.http.post(
        world.web.url + WEBHOOK,
        data={"imp_uid": imp_uid, "merchant_uid": charge.merchant_uid, "status": "paid"},
    )
    assert answer.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (answer.status_code, answer.json()["result"]) == (200, "settled")
    assert world.charge_of(charge.subscription_id).status == "paid"


def test_forged_webhooks_change_nothing(world: World) -> None:
    charge = world.unknown_charge("cust-target")
    # 1. an imp_uid PortOne does not know
    forged = world.post_webhook(
        imp_uid="imps_999999999999", merchant_uid=charge.merchant_uid, status="paid"
    )
    assert (forged.status_code, forged.json()["result"]) == (200, "forged")
    # 2. a real payment of someone else, claimed to be our charge
    other = world.unknown_charge("cust-other")
    other_imp_uid = world.pay_at_sandbox(other, notify=False)
    lie = world.post_webhook(imp_uid=other_imp_uid, merchant_uid=charge.merchant_uid, status="paid")
    assert (lie.status_code, lie.json()["result"]) == (200, "forged")
    # 3. our merchant_uid really paid at PortOne, but for 100 KRW instead of 9900
    cheap_imp_uid = world.pay_at_sandbox(charge, amount=100, notify=False)
    cheap = world.post_webhook(
        imp_uid=cheap_imp_uid, merchant_uid=charge.merchant_uid, status="paid"
    )
    assert (cheap.status_code, cheap.json()["result"]) == (200, "mismatch")
    [event] = world.events(charge.id, "portone_notice")
    assert event.data["verdict"] == "mismatch"
    after = world.charge_of(charge.subscription_id)
    assert (after.status, after.imp_uid, after.paid_at) == ("unknown", None, None)
    assert world.charge_of(other.subscription_id).status == "unknown"
    # 4. a real payment that is none of ours (a one-off order on the same PortOne account)
    order = ChargeRequest("cust-shop", "shop-order-1", 5000, "단건 주문")
    shop_imp_uid = world.pay(order, notify=False)
    stranger = world.post_webhook(imp_uid=shop_imp_uid, merchant_uid="shop-order-1", status="paid")
    assert (stranger.status_code, stranger.json()["result"]) == (200, "not_ours")
    with world.app.transaction() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Event).where(Event.kind == "portone_notice")
            )
            == 1
        )


def test_malformed_webhooks_are_refused(world: World) -> None:
    url = world.web.url + WEBHOOK
    assert world.http.post(url, json={"merchant_uid": "m"}).status_code == 400
    assert world.http.post(url, json=["imp_uid"]).status_code == 400
    assert (
        world.http.post(
            url, content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        world.http.post(url, json={"imp_uid": "../../users", "merchant_uid": "m"}).status_code
        == 400
    )
    assert world.http.post(url, content=b"x" * 20_000).status_code == 413
    assert world.http.get(url).status_code == 405


def test_webhook_settles_a_charge_while_the_worker_waits_for_portone(
    world: World, tmp_path: Path
) -> None:
    """A real worker sends the charge; the sandbox commits it and holds the answer (the
    worker's read timeout is 5 s). The sandbox's webhook settles the charge meanwhile."""
    from celery import Celery

    from billing.broker import CeleryPublisher, celery_config

    worker = WorkerProcess(world.env, tmp_path / "worker.log").start()
    try:
        sid = world.subscribe("cust-hang")
        world.sandbox.script(customer_uid="cust-hang", behaviors=["commit_then_timeout"])
        celery = Celery("test-publisher", set_as_current=False)
        celery.conf.update(celery_config(load_settings(world.env)))
        Scheduler(world.app, CeleryPublisher(celery)).run_pass()

        def paid() -> list[dict[str, object]]:
            return [p for p in world.sandbox.ledger() if p["status"] == "paid"]

        wait_for(paid, 30, "the worker's request to reach the sandbox")
        committed = time.monotonic()
        wait_for(lambda: world.charge_of(sid).status == "paid", 5, "the webhook")
        assert time.monotonic() - committed < 2
        assert "charge_answer" not in worker.log.read_text()  # the worker is still waiting
        wait_for(lambda: "charge_answer" in worker.log.read_text(), 15, "the worker's timeout")
        charge = world.charge_of(sid)
        assert (charge.status, charge.sends) == ("paid", 1)
        [payment] = paid()
        assert charge.imp_uid == payment["imp_uid"]
        [event] = world.events(charge.id, "portone_notice")
        assert event.data["charge_status"] == "processing"
    finally:
        worker.stop()


def test_answers_fast_and_defers_when_portone_is_slow(world: World) -> None:
    charge = world.unknown_charge("cust-fast")
    imp_uid = world.pay_at_sandbox(charge, notify=False)
    world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid)  # settled
    timings = []
    for n in range(30):
        started = time.monotonic()
        if n % 2:
            answer = world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid)
        else:
            answer = world.post_webhook(imp_uid=f"imps_{n:012d}", merchant_uid="sub-nobody-1-1")
        timings.append(time.monotonic() - started)
        assert answer.status_code == 200
    print(
        f"webhook latency: median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms over {len(timings)} webhooks"
    )
    assert max(timings) < 0.5

    slow = world.unknown_charge("cust-slow")
    slow_imp_uid = world.pay_at_sandbox(slow, notify=False)
    world.sandbox.set_latency(ms=1500)
    started = time.monotonic()
    answer = world.post_webhook(imp_uid=slow_imp_uid, merchant_uid=slow.merchant_uid)
    assert time.monotonic() - started < 1.0
    assert (answer.status_code, answer.json()["result"]) == (200, "deferred")
    # the verification went on and settled it when PortOne answered
    wait_for(lambda: world.charge_of(slow.subscription_id).status == "paid", 5, "verification")


def test_webhook_503_in_sandbox_mode_without_a_sandbox_to_ask(world: World) -> None:
    env = {k: v for k, v in world.env.items() if k != "BILLING_PORTONE_URL"}
    server = serve_app(env)
    try:
        answer = httpx.post(server.url + WEBHOOK, json={"imp_uid": "imps_1", "merchant_uid": "m"})
        assert answer.status_code == 503
        assert "BILLING_PORTONE_URL" in answer.json()["error"]
        ready = httpx.get(server.url + "/readyz")  # not ready: it cannot verify a webhook
        assert ready.status_code == 503
        assert ready.json()["configuration"].startswith("BILLING_PORTONE_URL: sandbox mode")
    finally:
        server.stop()


def test_source_allowlist(world: World) -> None:
    allow = WebConfig(webhook_allow=parse_allowlist("portone"))
    server = serve_app(world.env, allow, forwarded="127.0.0.1")
    webhook = {"imp_uid": "imps_000000000001", "merchant_uid": "m"}
    try:
        refused = httpx.post(server.url + WEBHOOK, json=webhook)
        assert refused.status_code == 403
        # through a proxy on this machine (FORWARDED_ALLOW_IPS=127.0.0.1)
        forwarded = httpx.post(
            server.url + WEBHOOK, json=webhook, headers={"X-Forwarded-For": "52.78.100.19"}
        )
        assert (forwarded.status_code, forwarded.json()["result"]) == (200, "forged")
        spoofed = httpx.post(
            server.url + WEBHOOK,
            json=webhook,
            headers={"X-Forwarded-For": "52.78.100.19, 198.51.100.7"},
        )
        assert spoofed.status_code == 403
        counters = httpx.get(server.url + "/metrics").text
        assert 'billing_webhook_notices_total{verdict="refused"} 2.0' in counters
    finally:
        server.stop()


# -- billing serve ---------------------------------------------------------------------------

SERVE = (
    "import sys; from billing.cli import cli, main; from billing.cli.serve import serve; "
    "cli.add_command(serve); main(sys.argv[1:])"
)


def start_serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", *args],
        cwd=ROOT,
        env=product_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("billing serve: listening on http://127.0.0.1:"), (
        line + process.stderr.read() if process.stderr else line
    )
    return process, line.split()[-1]


def test_billing_serve_subprocess(world: World) -> None:
    process, url = start_serve(world.env)
    try:
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        assert httpx.get(url + "/readyz", timeout=10).json()["status"] == "ready"
        charge = world.unknown_charge("cust-serve")
        imp_uid = world.pay_at_sandbox(charge, notify=False)
        answer = httpx.post(
            url + WEBHOOK, data={"imp_uid": imp_uid, "merchant_uid": charge.merchant_uid}
        )
        assert answer.json()["result"] == "settled"
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert '"action": "portone_notice"' in err  # JSON log lines with the stable action
    assert "sandbox_secret" not in err


def test_billing_serve_refuses_a_bad_allowlist(world: World) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE, "serve", "--port", "0"],
        cwd=ROOT,
        env=product_env({**world.env, "BILLING_WEBHOOK_ALLOW": "portone, 10.0.0.300"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("billing: error: BILLING_WEBHOOK_ALLOW")


# -- the pure parts (tables) -----------------------------------------------------------------


def plan(amount: int, interval: str | None = None, cron: str | None = None) -> Plan:
    parsed = parse_interval(interval) if interval else None
    name = f"p{amount}-{interval or cron}".replace(" ", "")
    return Plan(name, name, amount, load_zone("Asia/Seoul"), parsed, cron, version=1)


@pytest.mark.parametrize(
    ("terms", "per_month"),
    [
        (plan(9900, "1 month"), Fraction(9900)),
        (plan(29700, "3 months"), Fraction(9900)),
        (plan(99000, "1 year"), Fraction(8250)),
        (plan(100, "2 years"), Fraction(100, 24)),
        (plan(1000, "30 days"), Fraction(1000 * 146097, 4800 * 30)),
        (plan(7000, "1 week"), Fraction(7000 * 146097, 4800 * 7)),
        (plan(55000, cron="0 10 1 * *"), Fraction(55000)),  # once a month
        (plan(1000, cron="0 9 * * 1"), Fraction(1000 * 209, 48)),  # Mondays 2024-2027
        (plan(1200, cron="0 0 1 1,7 *"), Fraction(200)),  # twice a year
        (plan(10, cron="0 * * * *"), Fraction(10 * 1461 * 24, 48)),  # hourly
    ],
)
def test_monthly_amount(terms: Plan, per_month: Fraction) -> None:
    assert monthly_amount(terms) == per_month


def test_mrr_rounds_down_once() -> None:
    third = plan(100, "3 months")  # 33.33.. a month
    assert mrr([(third, 3)], MonthlyRates()) == 100
    assert mrr([(third, 1), (plan(1, "3 months"), 1)], MonthlyRates()) == 33


@pytest.mark.parametrize(
    ("text", "allowed", "refused"),
    [
        ("", ["198.51.100.7", "52.78.100.19"], []),
        ("off", ["198.51.100.7"], []),
        (
            "portone",
            ["52.78.100.19", "52.78.48.223", "52.78.5.241", "3.35.36.134"],
            ["52.78.100.20", "127.0.0.1"],
        ),
        ("portone, 10.0.0.0/8 ::1", ["10.2.3.4", "::1", "52.78.5.241"], ["11.0.0.1", None]),
    ],
)
def test_allowlist(text: str, allowed: list[str], refused: list[str | None]) -> None:
    config = WebConfig(webhook_allow=parse_allowlist(text))
    assert all(config.allows(host) for host in allowed)
    assert not any(config.allows(host) for host in refused)


@pytest.mark.parametrize(
    ("body", "content_type", "fields"),
    [
        (b'{"imp_uid": "imp_1", "merchant_uid": "m"}', "application/json", {"imp_uid": "imp_1"}),
        (b'{"imp_uid": "imp_1"}', "text/plain", {"imp_uid": "imp_1"}),
        (
            b"imp_uid=imp_1&merchant_uid=m&status=paid",
            "application/x-www-form-urlencoded",
            {"imp_uid": "imp_1", "status": "paid"},
        ),
        (b"imp_uid=imp_1&merchant_uid=m", "", {"merchant_uid": "m"}),
    ],
)
def test_webhook_fields(body: bytes, content_type: str, fields: dict[str, str]) -> None:
    parsed = webhook_fields(body, content_type)
    assert {k: parsed[k] for k in fields} == fields


@pytest.mark.parametrize(
    ("exchange", "verdict"),
    [
        (Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout"), Verdict.DEFERRED),
        (Exchange(500, b""), Verdict.DEFERRED),
        (Exchange(401, b'{"code": -1, "message": "token"}'), Verdict.DEFERRED),
        (Exchange(200, b"<html>"), Verdict.DEFERRED),
        (Exchange(404, b'{"code": -1, "message": "none", "response": null}'), Verdict.FORGED),
        (
            Exchange(200, envelope(response={"imp_uid": "imp_2", "merchant_uid": "m"})),
            Verdict.DEFERRED,
        ),
        (
            Exchange(200, envelope(response={"imp_uid": "imp_1", "merchant_uid": "other"})),
            Verdict.FORGED,
        ),
    ],
)
def test_read_payment_refusals(exchange: Exchange, verdict: Verdict) -> None:
    result = read_payment(exchange, PortoneWebhook("imp_1", "m", "paid"))
    assert isinstance(result, WebhookResult) and result.verdict == verdict


def test_read_payment_found() -> None:
    answer = envelope(
        response={"imp_uid": "imp_1", "merchant_uid": "m", "status": "paid", "amount": 9900}
    )
    assert read_payment(Exchange(200, answer), PortoneWebhook("imp_1", "m")) == Payment(
        "imp_1", "m", "paid", 9900
    )
