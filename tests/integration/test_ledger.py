"""Ledger reconciliation (SPEC 10) on real PostgreSQL: PortOne's payments against ours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, delete, event, func, select, text, update

from bench.ledger import PARTIAL, Kind, Spec, fill, load_ledger, population
from billing.app import App
from billing.db.tables import Charge, Event, Subscription
from billing.domain.charges import ChargeRequest
from billing.errors import InvalidInput
from billing.portone.answers import Exchange, Transport
from billing.portone.client import PortOneClient
from billing.portone.ledger import LedgerUnreadable
from billing.sandbox import SandboxServer
from billing.services.catalog_cache import CatalogCache
from billing.services.jobs import last_run
from billing.services.ledger import Verdict, reconcile_ledger
from billing.services.plan_store import current_plan, ensure_catalog
from billing.services.scheduling import Scheduler
from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import NOW, CliRunner
from tests.integration.conftest import Product
from tests.processes import wait_for
from tests.world import START, World

SINCE, UNTIL = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)


@pytest.fixture
def world(app: App) -> World:
    return World(app)


def reconcile(world: World) -> list[tuple[str, Verdict]]:
    report = reconcile_ledger(world.app, world.gateway, SINCE, UNTIL, CatalogCache())
    return [(finding.merchant_uid, finding.verdict) for finding in report.findings]


def forget(world: World, merchant_uid: str) -> None:
    """What a restore from a backup taken before this charge looks like to the database."""
    with world.app.transaction() as session:
        session.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers
        charge = session.scalar(select(Charge).where(Charge.merchant_uid == merchant_uid))
        assert charge is not None
        session.execute(delete(Event).where(Event.charge_id == charge.id))
        session.execute(delete(Charge).where(Charge.id == charge.id))
        session.execute(
            update(Subscription)
            .where(Subscription.id == charge.subscription_id)
            .values(
                period_no=charge.period_no,
                attempt=charge.attempt,
                current_period_start=None,
                current_period_end=None,
                due_period_start=charge.period_start,
                due_period_end=charge.period_end,
                due_cycle=charge.period_no - 1,
                current_cycle=None,
                next_charge_at=charge.period_start,
                status="active",
            )
        )


def test_a_payment_the_database_forgot_is_recorded_and_the_subscription_advances(
    world: World,
) -> None:
    sid = world.subscribe()
    world.cycle()
    [charge] = world.charges()
    forget(world, charge.merchant_uid)
    assert reconcile(world) == [(charge.merchant_uid, Verdict.CREATED)]
    [again] = world.charges()
    assert (again.merchant_uid, again.status, again.imp_uid) == (
        charge.merchant_uid,
        "paid",
        charge.imp_uid,
    )
    sub = world.subscription(sid)
    assert sub.period_no == 2 and sub.next_charge_at == datetime(2027, 2, 27, 15, 30, tzinfo=UTC)
    assert reconcile(world) == []  # both ledgers agree now
    world.cycle()
    assert len(world.gateway.paid()) == 1  # and the period is not charged again


def test_an_open_charge_portone_holds_paid_is_recorded_paid(world: World) -> None:
    world.subscribe()
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])  # unknown; the lookup never ran
    [charge] = world.charges()
    assert charge.status == "unknown"
    assert reconcile(world) == [(charge.merchant_uid, Verdict.RECORDED_PAID)]
    assert world.charges()[0].status == "paid"


def test_a_refund_made_in_portones_console_is_recorded(world: World) -> None:
    sid = world.subscribe()
    world.cycle()
    [charge] = world.charges()
    world.gateway.refund_in_console(charge.merchant_uid)
    assert reconcile(world) == [(charge.merchant_uid, Verdict.RECORDED_REFUND)]
    assert world.charges()[0].refunded_amount == 9900
    assert "charge_refunded" in world.events(sid)
    assert reconcile(world) == []


def test_a_net_cancelled_payment_is_not_recorded_paid(world: World) -> None:
    world.subscribe()
    world.gateway.script = ["timeout_as:cancelled"]
    world.cycle()
    assert world.charges()[0].status == "failed"
    assert reconcile(world) == []


def test_a_payment_for_a_period_this_database_has_not_reached_is_reported(world: World) -> None:
    sid = world.subscribe()
    with world.app.transaction() as session:
        key = session.get(Subscription, sid).key  # type: ignore[union-attr]
    world.gateway.pay_behind_our_back(ChargeRequest("cust-1", f"sub-{key}-3-1", 9900, "월간"))
    report = reconcile_ledger(world.app, world.gateway, SINCE, UNTIL, CatalogCache())
    [finding] = report.findings
    assert finding.verdict == Verdict.REPORTED and "has not reached it" in finding.detail
    assert not report.agree and world.charges() == []


def test_payments_that_are_not_ours_are_counted_and_left_alone(world: World) -> None:
    world.gateway.pay_behind_our_back(ChargeRequest("cust-1", "order-12345", 5000, "단건"))
    report = reconcile_ledger(world.app, world.gateway, SINCE, UNTIL, CatalogCache())
    assert (report.read, report.ours, report.findings, report.agree) == (1, 0, [], True)


def test_a_window_longer_than_portone_keeps_is_refused(world: World) -> None:
    with pytest.raises(InvalidInput, match="90 days"):
        reconcile_ledger(
            world.app, world.gateway, START, START + timedelta(days=91), CatalogCache()
        )
    with pytest.raises(InvalidInput, match="before --until"):
        reconcile_ledger(world.app, world.gateway, UNTIL, SINCE, CatalogCache())


def test_billing_reconcile_ledger_against_the_sandbox_over_http(
    cli: CliRunner, sandbox: SandboxServer, db_url: str
) -> None:
    env = {"BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": sandbox.url}
    ok(cli("customers", "add", "c1", env=env))
    ok(cli("subscriptions", "create", "--customer", "c1", "--plan", "basic-monthly", env=env))
    engine = create_engine(db_url)
    with engine.connect() as connection:
        key = connection.execute(text("SELECT key FROM subscriptions")).scalar_one()
    engine.dispose()
    portone = PortOneClient(sandbox.url, "sandbox_key", "sandbox_secret")
    request = ChargeRequest("c1", f"sub-{key}-1-1", 9900, "베이직 월간 구독")
    assert portone.again(request).status == 200  # paid at PortOne; this database never knew
    shown = ok(cli("reconcile", "ledger", env=env))
    assert f"sub-{key}-1-1" in shown and "created the charge, recorded paid" in shown
    [charge] = js(cli("charges", "list", "--json", env=env))
    assert (charge["merchant_uid"], charge["status"]) == (f"sub-{key}-1-1", "paid")
    assert "both ledgers agree" in ok(cli("reconcile", "ledger", env=env))
    later = ChargeRequest("c1", f"sub-{key}-3-1", 9900, "베이직 월간 구독")
    assert portone.again(later).status == 200
    portone.close()
    result = cli("reconcile", "ledger", "--json", env=env)
    document = json.loads(result.out)
    assert result.code == 1 and document["agree"] is False
    assert [f["verdict"] for f in document["findings"]] == ["reported: not repaired"]
    refused(cli("reconcile", "ledger", "--since", "someday", env=env), "--since")
    refused(cli("reconcile", "ledger", "--since", "2020-01-01", env=env), "90 days")


def test_the_scheduler_asks_for_one_ledger_reconciliation_a_day(world: World) -> None:
    world.scheduler.run_pass()
    second = Scheduler(world.app, world.publisher, CatalogCache())
    second.run_pass()
    world.scheduler.run_pass()
    assert world.publisher.ledgers == 1
    world.wall += timedelta(hours=23)
    world.scheduler.run_pass()
    assert world.publisher.ledgers == 1
    world.wall += timedelta(hours=1)
    world.scheduler.run_pass()
    assert world.publisher.ledgers == 2


def test_a_worker_runs_the_daily_ledger_reconciliation(product: Product) -> None:
    sid = product.subscribe("cust-ledger")
    with product.app.transaction() as session:
        key = session.get(Subscription, sid).key  # type: ignore[union-attr]
    portone = PortOneClient(product.sandbox.url, "sandbox_key", "sandbox_secret")
    portone.again(ChargeRequest("cust-ledger", f"sub-{key}-1-1", 9900, "월간"))
    portone.close()
    product.scheduler.run_pass()  # claims the day's reconciliation (and the due charge)
    wait_for(
        lambda: any(
            c.merchant_uid == f"sub-{key}-1-1" and c.status == "paid" for c in product.charges()
        ),
        30,
        "the payment PortOne holds to be recorded",
    )
    product.settle()
    assert len(product.paid_at_sandbox()) == 1  # recorded once, never charged again
    with product.app.transaction() as session:
        run = last_run(session, "ledger")
        assert run is not None and run.summary is not None and run.summary["ours"] == 1


def test_a_partial_refund_made_in_portones_console_is_recorded(world: World) -> None:
    sid = world.subscribe()
    world.cycle()
    [charge] = world.charges()
    [payment] = world.gateway.ledger[charge.merchant_uid]
    payment["cancel_amount"] = 4000  # still paid, 4,000 KRW given back in the console
    assert reconcile(world) == [(charge.merchant_uid, Verdict.RECORDED_REFUND)]
    after = world.charges()[0]
    assert (after.status, after.refunded_amount) == ("paid", 4000)
    assert "charge_refunded" in world.events(sid)
    assert reconcile(world) == []


def test_a_paid_charge_portone_holds_with_another_amount_is_reported(world: World) -> None:
    world.subscribe()
    world.cycle()
    [charge] = world.charges()
    [payment] = world.gateway.ledger[charge.merchant_uid]
    payment["amount"] = 99000
    report = reconcile_ledger(world.app, world.gateway, SINCE, UNTIL, CatalogCache())
    [finding] = report.findings
    assert finding.verdict == Verdict.REPORTED and "99,000" in finding.detail
    assert not report.agree
    assert world.charges()[0].amount == 9900  # nothing rewritten


def test_an_open_charge_portone_holds_paid_with_another_amount_is_recorded_and_reported(
    world: World,
) -> None:
    world.subscribe()
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    [charge] = world.charges()
    [payment] = world.gateway.ledger[charge.merchant_uid]
    payment["amount"] = 99000
    report = reconcile_ledger(world.app, world.gateway, SINCE, UNTIL, CatalogCache())
    [finding] = report.findings
    assert finding.verdict == Verdict.REPORTED and "99,000" in finding.detail
    assert world.charges()[0].status == "paid"  # PortOne holds it paid: recorded (invariant 3)
    assert not report.agree


def _statements(app: App) -> list[str]:
    """Every SQL statement ``app`` sends from now on."""
    sent: list[str] = []

    @event.listens_for(app.engine, "before_cursor_execute")
    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    return sent


def _window(count: int) -> tuple[list[Spec], datetime, datetime]:
    now = int(datetime.now(UTC).timestamp())
    specs = population(count, now - 29 * 86_400)
    return specs, datetime.fromtimestamp(now - 30 * 86_400, UTC), datetime.now(UTC)


def test_thousands_of_payments_that_agree_cost_a_query_a_page_and_only_differences_are_repaired(
    app: App, sandbox: SandboxServer, db_url: str
) -> None:
    specs, since, until = _window(3_000)  # 3 pages of paid payments, 1 of cancelled ones
    imp_uids = list(load_ledger(sandbox, specs))
    with app.transaction() as session:
        ensure_catalog(session, app.settings, NOW)
        plan = current_plan(session, "basic-monthly")
    fill(db_url, plan, specs, imp_uids)
    portone = PortOneClient(sandbox.url, "sandbox_key", "sandbox_secret")
    sent = _statements(app)
    report = reconcile_ledger(app, portone, since, until, CatalogCache())
    wanted = {
        Kind.MISSING: Verdict.CREATED,
        Kind.REFUNDED: Verdict.RECORDED_REFUND,
        Kind.PARTIAL: Verdict.RECORDED_REFUND,
        Kind.AMOUNT: Verdict.REPORTED,
    }
    found = {(f.merchant_uid, f.verdict) for f in report.findings}
    assert found == {(s.merchant_uid, wanted[s.kind]) for s in specs if s.kind in wanted}
    assert (report.read, report.ours) == (3_000, 2_999)
    # the 2,990 that agree: a read of each page's merchant_uids, no lock, no savepoint each
    assert len(sent) < 200 and sum("SAVEPOINT" in s for s in sent) == 2 * len(found)
    with app.transaction() as session:
        paid = session.scalar(select(func.count()).where(Charge.status == "paid"))
        refunded = session.scalar(select(func.sum(Charge.refunded_amount)))
    assert (paid, refunded) == (2_998, 9_900 + PARTIAL)  # all ours but the net-cancelled
    again = reconcile_ledger(app, portone, since, until, CatalogCache())
    portone.close()
    assert [(f.merchant_uid, f.verdict) for f in again.findings] == [
        (s.merchant_uid, Verdict.REPORTED) for s in specs if s.kind is Kind.AMOUNT
    ]


class Unanswered:
    """PortOne answers the paid pages and then stops answering."""

    def __init__(self, world: World) -> None:
        self.world = world

    def payments_by_status(
        self, status: str, since: int, until: int, page: int, limit: int = 1000
    ) -> Exchange:
        if status == "cancelled":
            return Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout")
        return self.world.gateway.payments_by_status(status, since, until, page, limit)


def test_a_page_that_cannot_be_read_repairs_nothing_the_pages_before_it_showed(
    world: World,
) -> None:
    world.subscribe()
    world.cycle()
    [charge] = world.charges()
    forget(world, charge.merchant_uid)  # the paid page holds a payment to repair
    with pytest.raises(LedgerUnreadable, match="did not answer: ReadTimeout"):
        reconcile_ledger(world.app, Unanswered(world), SINCE, UNTIL, CatalogCache())
    assert world.charges() == []
    assert reconcile(world) == [(charge.merchant_uid, Verdict.CREATED)]
