"""Refunds on real PostgreSQL against the bundled sandbox over HTTP: the services with a
scripted gateway (faults injected around the real cancel), then the command in subprocesses.
The sandbox's cancel history is the judge of money moved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from billing.app import App, build_app
from billing.broker import celery_config
from billing.catalog_file import parse_catalog
from billing.clock import Clocks, FixedClock, system_now
from billing.config import load_settings
from billing.db.tables import Charge, Event, Refund
from billing.domain.refunds import CancelRequest
from billing.domain.retry import LOOKUP_EVERY
from billing.errors import Conflict, InvalidInput, NotFound
from billing.portone.answers import Exchange, Transport
from billing.portone.cancels import PortOneCancels
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.sandbox import SandboxConfig, SandboxServer
from billing.sandbox.ledger import CancelTerms
from billing.services import plan_store
from billing.services.catalog_cache import CatalogCache
from billing.services.customers import add_customer
from billing.services.pipeline import Pipeline
from billing.services.refunds import (
    RefundRunner,
    begin_refund,
    reconcile_refund,
    refunds_to_reconcile,
    request_refund,
)
from billing.services.scheduling import Scheduler
from billing.services.subscriptions import create_subscription
from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import CliRunner, snapshot
from tests.fakes import ListPublisher
from tests.processes import WorkerProcess, wait_for

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month}
"""


class ScriptedCancels:
    """The refund port over the real sandbox, with a fault scripted for each cancel call:
    ``pass``, ``not_sent`` or ``error_500`` (nothing reaches the sandbox), or
    ``timeout_after_commit`` / ``garbage_after_commit`` (the sandbox cancels, the answer is lost).
    """

    def __init__(self, inner: PortOneCancels) -> None:
        self.inner = inner
        self.script: list[str] = []
        self.calls = 0

    def cancel(self, request: CancelRequest) -> Exchange:
        self.calls += 1
        action = self.script.pop(0) if self.script else "pass"
        if action == "not_sent":
            return Exchange(failure=Transport.NOT_SENT, detail="ConnectError")
        if action == "error_500":
            return Exchange(500, b'{"code": -1, "message": "internal", "response": null}')
        exchange = self.inner.cancel(request)
        if action == "timeout_after_commit":
            return Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout")
        if action == "garbage_after_commit":
            return Exchange(200, b"<html>gateway</html>")
        return exchange

    def payment(self, imp_uid: str) -> Exchange:
        return self.inner.payment(imp_uid)


class Shop:
    """One database, the sandbox over HTTP, a movable wall clock and the refund services."""

    def __init__(self, app: App, sandbox: SandboxServer) -> None:
        self.app = app
        self.sandbox = sandbox
        self.system = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
        app.clocks = Clocks(FixedClock(START), self.system)
        self.client = PortOneClient(sandbox.url, "sandbox_key", "sandbox_secret", timeout=5)
        self.gateway = ScriptedCancels(PortOneCancels(self.client))
        self.sleeps: list[float] = []
        self.runner = RefundRunner(app, self.gateway, sleep=self.sleeps.append, jitter=lambda: 1.0)
        self.window = timedelta(seconds=app.settings.reconcile_after)
        with app.transaction() as session:
            parsed = parse_catalog(CATALOG, "c.yaml", "Asia/Seoul")
            plan_store.load_catalog(session, parsed, "c.yaml", "sha", START)

    @property
    def wall(self) -> datetime:
        """The system clock's reading."""
        return self.system.moment

    @wall.setter
    def wall(self, moment: datetime) -> None:
        self.system.moment = moment

    def charge(self, uid: str = "cust-1") -> Charge:
        """Subscribe ``uid`` and charge its first period at the sandbox."""
        with self.app.transaction() as session:
            add_customer(session, uid, START)
            create_subscription(session, uid, "monthly", START, START)
        publisher = ListPublisher()
        plans = CatalogCache()
        Scheduler(self.app, publisher, plans).run_pass()
        pipeline = Pipeline(self.app, PortOneGateway(self.client), publisher, plans)
        for charge_id in publisher.take()[0]:
            pipeline.charge(charge_id)
        return self.charges()[-1]

    def charges(self) -> list[Charge]:
        with self.app.transaction() as session:
            return list(session.scalars(select(Charge).order_by(Charge.id)))

    def refund_row(self, refund_id: int) -> Refund:
        with self.app.transaction() as session:
            row = session.get(Refund, refund_id)
            assert row is not None
            return row

    def refunded(self, charge_id: int) -> int:
        with self.app.transaction() as session:
            charge = session.get(Charge, charge_id)
            assert charge is not None
            return charge.refunded_amount

    def cancels_at_sandbox(self, imp_uid: str | None) -> list[int]:
        [payment] = [p for p in self.sandbox.ledger() if p["imp_uid"] == imp_uid]
        history: list[dict[str, Any]] = payment["cancel_history"]  # type: ignore[assignment]
        return [entry["amount"] for entry in history]

    def events(self, charge_id: int) -> list[str]:
        with self.app.transaction() as session:
            query = select(Event.kind).where(Event.charge_id == charge_id).order_by(Event.id)
            return list(session.scalars(query))

    def sweep(self) -> list[int]:
        with self.app.transaction() as session:
            return refunds_to_reconcile(session, self.wall, self.window, 100)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(port=0, auto_register=True))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shop(app: App, sandbox: SandboxServer) -> Iterator[Shop]:
    built = Shop(app, sandbox)
    yield built
    built.client.close()


def test_a_full_refund_refunds_what_was_paid(shop: Shop) -> None:
    charge = shop.charge()
    assert charge.status == "paid"
    refund = shop.refund_row(shop.runner.refund(charge.id, None, "고객 요청"))
    assert (refund.status, refund.amount, refund.checksum, refund.sends) == (
        "succeeded",
        9900,
        9900,
        1,
    )
    assert shop.refunded(charge.id) == 9900
    assert shop.cancels_at_sandbox(charge.imp_uid) == [9900]
    assert [p["status"] for p in shop.sandbox.ledger()] == ["cancelled"]
    assert shop.events(charge.id)[-3:] == ["refund_requested", "refund_answer", "charge_refunded"]


def test_partial_refunds_carry_the_balance_as_checksum(shop: Shop) -> None:
    charge = shop.charge()
    first = shop.refund_row(shop.runner.refund(charge.id, 3000, "부분 환불"))
    rest = shop.refund_row(shop.runner.refund(charge.id, None, "나머지"))
    assert [(r.amount, r.checksum, r.status) for r in (first, rest)] == [
        (3000, 9900, "succeeded"),
        (6900, 6900, "succeeded"),
    ]
    assert shop.refunded(charge.id) == 9900
    assert shop.cancels_at_sandbox(charge.imp_uid) == [3000, 6900]
    with pytest.raises(Conflict, match="already refunded in full"):
        shop.runner.refund(charge.id, None, "again")


@pytest.mark.parametrize(
    ("amount", "reason", "error", "message"),
    [
        (10_000, "r", Conflict, "more than charge 1 has left to refund: 9900 KRW"),
        (0, "r", InvalidInput, "--amount must be a positive"),
        (-100, "r", InvalidInput, "--amount must be a positive"),
        (None, "   ", InvalidInput, "--reason must not be empty"),
        (None, "x" * 201, InvalidInput, "at most 200"),
    ],
)
def test_a_refused_refund_changes_nothing(
    shop: Shop, db_url: str, amount: int | None, reason: str, error: type[Exception], message: str
) -> None:
    charge = shop.charge()
    before = snapshot(db_url)
    with pytest.raises(error, match=message):
        shop.runner.refund(charge.id, amount, reason)
    assert snapshot(db_url) == before
    assert shop.cancels_at_sandbox(charge.imp_uid) == []


def test_only_a_paid_charge_is_refunded(shop: Shop) -> None:
    shop.sandbox.script("cust-1", ["decline"])
    charge = shop.charge()
    assert charge.status == "failed"
    with pytest.raises(Conflict, match="is failed: only a paid charge"):
        shop.runner.refund(charge.id, None, "r")
    with pytest.raises(NotFound, match="no charge 999"):
        shop.runner.refund(999, None, "r")


def test_one_refund_in_flight_per_charge(shop: Shop) -> None:
    charge = shop.charge()
    with shop.app.transaction() as session:
        request_refund(session, charge.id, 1000, "first", START, shop.wall)
    with pytest.raises(Conflict, match="already has refund 1 in progress"):
        shop.runner.refund(charge.id, 1000, "second")
    with pytest.raises(IntegrityError), shop.app.transaction() as session:  # the database too
        session.add(
            Refund(
                charge_id=charge.id,
                amount=1,
                checksum=9900,
                reason="x",
                status="unknown",
                sends=1,
                created_at=START,
                updated_at=shop.wall,
            )
        )
    assert shop.cancels_at_sandbox(charge.imp_uid) == []


def test_a_timeout_after_the_cancel_committed_is_reconciled_to_succeeded(shop: Shop) -> None:
    charge = shop.charge()
    shop.gateway.script = ["timeout_after_commit"]
    refund = shop.refund_row(shop.runner.refund(charge.id, 4000, "r"))
    assert (refund.status, refund.sends) == ("succeeded", 1)  # the command's own lookup
    assert shop.sleeps == [1.0]
    assert shop.refunded(charge.id) == 4000
    assert shop.cancels_at_sandbox(charge.imp_uid) == [4000]
    assert shop.gateway.calls == 1
    assert "refund_reconciled" in shop.events(charge.id)


def test_a_5xx_waits_for_the_window_then_sends_again(shop: Shop) -> None:
    charge = shop.charge()
    shop.gateway.script = ["error_500"]
    refund_id = shop.runner.refund(charge.id, None, "r")
    assert shop.refund_row(refund_id).status == "unknown"  # PortOne has nothing yet: wait
    assert shop.sweep() == []  # looked up just now
    shop.wall += timedelta(seconds=LOOKUP_EVERY)
    assert shop.sweep() == [refund_id]
    assert reconcile_refund(shop.app, shop.gateway, refund_id) == "unknown"  # inside the window
    shop.wall += shop.window
    assert shop.sweep() == [refund_id]
    assert shop.runner.reconcile(refund_id) == "succeeded"
    assert shop.refund_row(refund_id).sends == 2
    assert shop.cancels_at_sandbox(charge.imp_uid) == [9900]


def test_a_resend_after_the_first_went_through_is_refused_and_looked_up(shop: Shop) -> None:
    """The checksum makes a double refund impossible: PortOne's balance moved."""
    charge = shop.charge()
    shop.gateway.script = ["garbage_after_commit", "pass"]
    with shop.app.transaction() as session:
        refund_id = request_refund(session, charge.id, 2500, "r", START, shop.wall).id
    assert shop.runner.send(refund_id) == "unknown"
    with shop.app.transaction() as session:  # as if a lookup had been lost: sent again
        row = session.get(Refund, refund_id)
        assert row is not None
        row.status = "pending"
    assert shop.runner.send(refund_id) == "unknown"  # refused (checksum): look it up
    assert shop.runner.reconcile(refund_id) == "succeeded"
    assert shop.cancels_at_sandbox(charge.imp_uid) == [2500]
    assert shop.refunded(charge.id) == 2500


def test_a_checksum_mismatch_is_refused_and_nothing_is_recorded(shop: Shop) -> None:
    charge = shop.charge()
    shop.sandbox.state.ledger.cancel(charge.imp_uid, None, CancelTerms(1000, None, "콘솔"), 0)
    refund = shop.refund_row(shop.runner.refund(charge.id, None, "r"))
    assert refund.status == "failed"
    assert refund.fail_reason is not None and "checksum" in refund.fail_reason
    assert shop.refunded(charge.id) == 0
    assert shop.cancels_at_sandbox(charge.imp_uid) == [1000]  # only the console's


def test_a_cancel_that_never_left_is_tried_again_then_fails(shop: Shop) -> None:
    charge = shop.charge()
    shop.gateway.script = ["not_sent", "pass"]
    assert shop.refund_row(shop.runner.refund(charge.id, 100, "r")).status == "succeeded"
    shop.gateway.script = ["not_sent"] * 3
    refund = shop.refund_row(shop.runner.refund(charge.id, 100, "r"))
    assert (refund.status, refund.fail_reason) == ("failed", "not sent: ConnectError")
    assert shop.sleeps == [0.5, 0.5, 1.0]
    assert shop.cancels_at_sandbox(charge.imp_uid) == [100]


def test_refunds_whose_process_died_are_swept_and_settled(shop: Shop) -> None:
    charge = shop.charge()
    with shop.app.transaction() as session:  # died after writing, before sending
        never_sent = request_refund(session, charge.id, 1000, "r", START, shop.wall).id
    assert shop.sweep() == []
    shop.wall += shop.window
    assert shop.sweep() == [never_sent]
    assert reconcile_refund(shop.app, shop.gateway, never_sent) == "succeeded"
    with shop.app.transaction() as session:  # died after sending, before recording
        in_flight = request_refund(session, charge.id, 2000, "r", START, shop.wall).id
    with shop.app.transaction() as session:
        work = begin_refund(session, in_flight, shop.wall)
    assert work is not None
    shop.gateway.cancel(work.request)
    assert shop.sweep() == []
    shop.wall += shop.window
    assert shop.sweep() == [in_flight]
    assert shop.refund_row(in_flight).status == "unknown"
    assert reconcile_refund(shop.app, shop.gateway, in_flight) == "succeeded"
    assert shop.refund_row(in_flight).sends == 1
    assert shop.cancels_at_sandbox(charge.imp_uid) == [1000, 2000]
    assert shop.refunded(charge.id) == 3000


# -- the command, in subprocesses --------------------------------------------------------------


@pytest.fixture
def paid(shop: Shop, sandbox: SandboxServer) -> dict[str, Any]:
    charge = shop.charge()
    return {"charge": charge, "env": {"BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": sandbox.url}}


def test_the_refund_command(cli: CliRunner, shop: Shop, paid: dict[str, Any]) -> None:
    env, charge = paid["env"], paid["charge"]
    view = js(
        cli(
            "charges",
            "refund",
            str(charge.id),
            "--reason",
            "고객 요청",
            "--amount",
            "3000",
            "--json",
            env=env,
        )
    )
    wanted = {
        "charge_id": charge.id,
        "amount": 3000,
        "checksum": 9900,
        "status": "succeeded",
        "refunded_amount": 3000,
        "refundable": 6900,
    }
    assert {key: view[key] for key in wanted} == wanted
    out = ok(cli("charges", "refund", str(charge.id), "--reason", "나머지", env=env))
    assert out.strip() == (
        f"refunded 6,900 KRW of charge {charge.id} (refund 2): 9,900 of "
        "9,900 KRW refunded, 0 KRW left"
    )
    refused(
        cli("charges", "refund", str(charge.id), "--reason", "r", env=env),
        "already refunded in full",
    )
    listed = js(cli("refunds", "list", "--json", env=env))
    assert [(r["amount"], r["status"]) for r in listed] == [
        (3000, "succeeded"),
        (6900, "succeeded"),
    ]
    assert shop.cancels_at_sandbox(charge.imp_uid) == [3000, 6900]
    assert "no refund to settle" in ok(cli("refunds", "reconcile", env=env))


def test_the_refund_command_refuses_without_changing_anything(
    cli: CliRunner, shop: Shop, paid: dict[str, Any], db_url: str
) -> None:
    env, charge = paid["env"], paid["charge"]
    before = snapshot(db_url)
    cid = str(charge.id)
    refused(
        cli("charges", "refund", cid, "--reason", "r", "--amount", "9901", env=env),
        "more than charge",
        "9900 KRW",
    )
    refused(
        cli("charges", "refund", cid, "--reason", "r", "--amount", "0", env=env),
        "--amount must be a positive",
    )
    refused(cli("charges", "refund", cid, "--reason", "r", "--amount", "1.5", env=env), "--amount")
    refused(cli("charges", "refund", cid, env=env), "--reason")
    refused(cli("charges", "refund", "abc", "--reason", "r", env=env), "CHARGE_ID")
    refused(cli("charges", "refund", "424242", "--reason", "r", env=env), "no charge 424242")
    assert snapshot(db_url) == before
    assert shop.cancels_at_sandbox(charge.imp_uid) == []


def test_the_refund_command_reports_a_refusal_and_exits_non_zero(
    cli: CliRunner, shop: Shop, paid: dict[str, Any]
) -> None:
    env, charge = paid["env"], paid["charge"]
    shop.sandbox.state.ledger.cancel(charge.imp_uid, None, CancelTerms(1000, None, "콘솔"), 0)
    line = refused(
        cli("charges", "refund", str(charge.id), "--reason", "r", env=env),
        "refund 1 of charge",
        "failed, nothing was refunded",
        "checksum",
    )
    assert "9900" in line
    [row] = js(cli("refunds", "list", "--status", "failed", "--json", env=env))
    assert row["fail_reason"].startswith("checksum")
    assert shop.refunded(charge.id) == 0


# -- the scheduler's sweep and the billing.refund task, in a real worker -------------------------


def test_the_sweep_hands_a_refund_whose_process_died_to_a_worker(
    db_url: str, redis_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    from billing.broker import CeleryPublisher

    if not hasattr(CeleryPublisher, "refund"):
        pytest.skip("billing.refund is not wired into the publisher and the scheduler yet")
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "1",
        "BILLING_RECONCILE_AFTER": "3",
    }
    settings = load_settings(env)
    app = build_app(settings)
    shop = Shop(app, sandbox)
    charge = shop.charge()
    with app.transaction() as session:  # sent, then its process died: processing forever
        refund_id = request_refund(session, charge.id, 1500, "r", START, system_now()).id
    with app.transaction() as session:
        work = begin_refund(session, refund_id, system_now())
    assert work is not None
    shop.gateway.cancel(work.request)
    celery = Celery("test-publisher", set_as_current=False)
    celery.conf.update(celery_config(settings))
    scheduler = Scheduler(app, CeleryPublisher(celery))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:

        def settled() -> bool:
            scheduler.run_pass()
            return shop.refund_row(refund_id).status == "succeeded"

        wait_for(settled, 30, "the refund to be settled", step=0.5)
    finally:
        worker.stop()
        shop.client.close()
        app.close()
    assert shop.refund_row(refund_id).sends == 1
    assert shop.cancels_at_sandbox(charge.imp_uid) == [1500]
    assert shop.refunded(charge.id) == 1500
