"""The charging services on real PostgreSQL, with an in-memory PortOne and broker.

These drive the scheduler and pipeline step by step, so that each money rule can be seen
on its own; the same paths run through a real worker and the sandbox over HTTP in
test_pipeline_e2e.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.clock import Clocks, FixedClock
from billing.db.tables import Charge, JobRun
from billing.services import plan_store
from billing.services.catalog_cache import CatalogCache
from billing.services.customers import add_customer
from billing.services.jobs import LEDGER
from billing.services.scheduling import Scheduler
from billing.services.subscriptions import create_subscription
from tests.fakes import ListPublisher
from tests.world import CATALOG, START, World


@pytest.fixture
def world(app: App) -> World:
    return World(app)


def statuses(charges: list[Charge]) -> list[tuple[int, int, str]]:
    return [(c.period_no, c.attempt, c.status) for c in charges]


def test_an_approved_charge_is_paid_and_the_next_period_is_due(world: World) -> None:
    sid = world.subscribe()
    world.cycle()
    [charge] = world.charges()
    sub = world.subscription(sid)
    assert (charge.status, charge.amount, charge.imp_uid) == ("paid", 9900, "imps_000000000001")
    assert charge.merchant_uid == f"sub-{sub.key}-1-1"
    assert sub.status == "active" and sub.period_no == 2
    assert sub.next_charge_at == datetime(2027, 2, 27, 15, 30, tzinfo=UTC)  # Feb 28 00:30 KST
    assert (sub.current_period_start, sub.current_period_end) == (START, sub.next_charge_at)


def test_a_decline_is_failed_past_due_and_retried_on_the_dunning_schedule(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["decline"]
    world.cycle()
    sub = world.subscription(sid)
    assert statuses(world.charges()) == [(1, 1, "failed")]
    assert world.charges()[0].fail_reason == "잔액부족"
    assert sub.status == "past_due" and sub.next_charge_at == START + timedelta(days=1)
    world.clock.advance(timedelta(days=1))
    world.cycle()
    assert statuses(world.charges()) == [(1, 1, "failed"), (1, 2, "paid")]
    sub = world.subscription(sid)
    assert sub.status == "active"
    assert sub.next_charge_at == datetime(2027, 2, 27, 15, 30, tzinfo=UTC)  # original schedule
    assert "payment_recovered" in world.events(sid)


def test_a_card_that_always_declines_gets_every_retry_then_is_canceled(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["decline"] * 10
    for _ in range(6):
        world.cycle()
        world.clock.advance(timedelta(days=1))
    assert statuses(world.charges()) == [(1, 1, "failed"), (1, 2, "failed"), (1, 3, "failed")]
    assert [c.created_at for c in world.charges()] == [
        START,
        START + timedelta(days=1),
        START + timedelta(days=3),
    ]
    sub = world.subscription(sid)
    assert sub.status == "canceled" and sub.next_charge_at is None
    world.clock.advance(timedelta(days=90))
    world.cycle()
    assert len(world.charges()) == 3


def test_a_refusal_moves_no_money_and_fails_the_charge(world: World) -> None:
    world.subscribe()
    world.gateway.script = ["refuse"]
    world.cycle()
    assert statuses(world.charges()) == [(1, 1, "failed")]
    assert world.gateway.paid() == []


def test_transient_failure_is_retried_with_the_same_merchant_uid(world: World) -> None:
    world.subscribe()
    world.gateway.script = ["not_sent"]
    world.scheduler.run_pass()
    charges, _ = world.publisher.take()
    world.pipeline.charge(charges[0])
    [charge] = world.charges()
    assert charge.status == "pending" and charge.resend_at is not None
    world.wall = charge.resend_at
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "paid" and charge.sends == 2
    assert [r.merchant_uid for r in world.gateway.sent] == [charge.merchant_uid] * 2


def test_commit_then_timeout_is_reconciled_to_paid_without_a_second_payment(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    assert world.charges()[0].status == "unknown"
    world.run_queue()  # the reconcile message
    [charge] = world.charges()
    assert charge.status == "paid" and charge.sends == 1
    assert len(world.gateway.paid()) == 1
    assert world.subscription(sid).period_no == 2


def test_5xx_before_processing_waits_for_the_window_then_resends_the_same_merchant_uid(
    world: World,
) -> None:
    world.subscribe()
    world.gateway.script = ["error_500"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    world.run_queue()  # lookup inside the window: nothing there yet, keep asking
    [charge] = world.charges()
    assert charge.status == "unknown"
    world.wall += timedelta(seconds=world.app.settings.reconcile_after)
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "paid" and charge.sends == 2
    assert len({r.merchant_uid for r in world.gateway.sent}) == 1


def test_a_charge_stuck_in_processing_is_reconciled(world: World) -> None:
    world.subscribe()
    world.scheduler.run_pass()
    charge_id = world.publisher.take()[0][0]
    with world.app.transaction() as session:  # a worker took it, sent it, and died
        from billing.services.charging import begin_charge

        work = begin_charge(
            session, charge_id, world.clock.now(), world.pipeline.timing(), world.pipeline.plans
        )
        assert work is not None
    world.gateway.again(work.request)
    world.wall += timedelta(seconds=world.app.settings.reconcile_after)
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "paid" and len(world.gateway.paid()) == 1


def test_a_lost_publish_is_published_again(world: World) -> None:
    world.subscribe()
    world.scheduler.run_pass()
    world.publisher.take()  # the message is lost
    world.cycle()
    assert world.charges()[0].status == "pending"  # too early to call it lost
    world.wall += timedelta(seconds=world.app.settings.reconcile_after)
    world.cycle()
    assert world.charges()[0].status == "paid"


def test_a_duplicate_message_charges_once(world: World) -> None:
    world.subscribe()
    world.scheduler.run_pass()
    charge_id = world.publisher.take()[0][0]
    assert world.pipeline.charge(charge_id) == "approved"
    assert world.pipeline.charge(charge_id) is None
    assert len(world.gateway.sent) == 1


def test_catch_up_after_the_scheduler_was_down_charges_each_missed_period_once_oldest_first(
    world: World,
) -> None:
    sid = world.subscribe()
    world.clock.advance(timedelta(days=95))  # Jan 31 + 95 days: Feb, Mar, Apr were missed
    for _ in range(5):
        world.cycle()
    periods = [(c.period_no, c.period_start) for c in world.charges(sid)]
    assert [p for p, _ in periods] == [1, 2, 3, 4]
    assert [s.astimezone(UTC).date().isoformat() for _, s in periods] == [
        "2027-01-30",
        "2027-02-27",
        "2027-03-30",
        "2027-04-29",
    ]  # 00:30 KST on the 31st/28th/31st/30th
    assert len(world.gateway.paid()) == 4


def test_two_schedulers_racing_claim_each_due_subscription_once(world: World) -> None:
    for n in range(60):
        world.subscribe(f"cust-{n}")
    barrier = threading.Barrier(2)
    second = Scheduler(world.app, world.publisher, CatalogCache(), batch=7)
    world.scheduler.batch = 7

    def run(scheduler: Scheduler) -> None:
        barrier.wait()
        scheduler.run_pass()

    threads = [threading.Thread(target=run, args=(s,)) for s in (world.scheduler, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    charges = world.charges()
    assert len(charges) == 60
    assert len({c.subscription_id for c in charges}) == 60
    assert sorted(world.publisher.charges) == sorted(c.id for c in charges)


def test_cancel_at_period_end_serves_the_paid_period_and_never_renews(world: World) -> None:
    from billing.services.subscriptions import cancel

    sid = world.subscribe()
    world.cycle()
    with world.app.transaction() as session:
        cancel(session, sid, START, world.wall, at_period_end=True)
    world.clock.advance(timedelta(days=60))
    world.cycle()
    assert len(world.charges()) == 1
    assert world.subscription(sid).status == "canceled"


def test_a_price_change_applies_from_the_next_period(world: World) -> None:
    sid = world.subscribe()
    world.cycle()
    with world.app.transaction() as session:
        parsed = parse_catalog(CATALOG.replace("9900", "12900"), "c.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "c.yaml", "sha2", START)
    world.clock.advance(timedelta(days=31))
    world.cycle()
    assert [c.amount for c in world.charges(sid)] == [9900, 12900]


def test_one_clocks_object_fixes_both_clocks_of_the_scheduler(app: App) -> None:
    """The scheduler used to read the system clock from a bare default; now both clocks
    come from ``App.clocks``: the charge is dated in billing time, its timers in system time,
    and the daily ledger job is claimed at the system clock's reading."""
    wall = datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    app.clocks = Clocks(FixedClock(START), FixedClock(wall))
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "c.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "c.yaml", "sha", START)
        add_customer(session, "cust-1", START)
        create_subscription(session, "cust-1", "monthly", START, START)
    publisher = ListPublisher()
    report = Scheduler(app, publisher, CatalogCache()).run_pass()
    assert report.claimed == 1 and len(publisher.take()[0]) == 1
    with app.transaction() as session:
        charge = session.scalars(select(Charge)).one()
        ledger = session.get(JobRun, LEDGER)
    assert (charge.created_at, charge.period_start, charge.updated_at) == (START, START, wall)
    assert ledger is not None and ledger.last_started_at == wall
