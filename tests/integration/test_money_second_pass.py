"""Issue 11: eight reproduced ways the money invariants broke, and the review's suspicions.

Each test walks one path on real PostgreSQL through the real scheduler and pipeline, with an
in-memory PortOne (tests/fakes.py). Each failed on the code before its fix.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.db.tables import Charge, Event, PlanRow, Subscription
from billing.domain.charges import ChargeRequest
from billing.services import plan_store, subscriptions
from billing.services.status import status_report
from tests.world import START, World

TWO_PLANS = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month, dunning: {retry_after: [1d, 3d], final_action: cancel}}
  - {id: yearly, name: 연간, amount: 99000, interval: 1 year}
"""


@pytest.fixture
def world(app: App) -> World:
    return World(app)


def statuses(charges: list[Charge]) -> list[tuple[int, int, str]]:
    return [(c.period_no, c.attempt, c.status) for c in charges]


def event_data(world: World, sid: int, kind: str) -> list[dict[str, object]]:
    with world.app.transaction() as session:
        query = select(Event.data).where(Event.subscription_id == sid, Event.kind == kind)
        return list(session.scalars(query.order_by(Event.id)))


def claimed(world: World) -> list[int]:
    """Run a scheduler pass; the charge ids it published (the queue), not yet delivered."""
    world.scheduler.run_pass()
    return world.publisher.take()[0]


def request_of(charge: Charge) -> ChargeRequest:
    return ChargeRequest(charge.customer_uid, charge.merchant_uid, charge.amount, charge.name)


# -- 1, 5 and 11: a refusal is looked up before it is believed --------------------------------


def test_already_paid_on_a_first_send_after_a_restore_is_recorded_paid_not_declined(
    world: World,
) -> None:
    sid = world.subscribe()
    ids = claimed(world)
    [charge] = world.charges()
    world.gateway.pay_behind_our_back(request_of(charge))  # then the database was restored
    for charge_id in ids:
        world.pipeline.charge(charge_id)
    world.run_queue()
    [charge] = world.charges()
    [paid] = world.gateway.paid()
    assert (charge.status, charge.imp_uid) == ("paid", paid["imp_uid"])
    assert world.subscription(sid).status == "active"
    world.clock.advance(timedelta(days=5))
    world.cycle()
    assert len(world.gateway.paid()) == 1  # dunning never charged the period again


def test_a_refusal_that_the_lookup_does_not_explain_is_a_decline_with_its_reason(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["refuse"]
    world.cycle()
    [charge] = world.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "등록되지 않은 구매자")
    assert world.subscription(sid).status == "past_due"
    assert [d["found"] for d in event_data(world, sid, "reconciled")] == ["nothing"]


def test_a_transient_first_send_then_a_refusal_ends_in_dunning_not_an_endless_loop(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["not_sent", "refuse"]
    world.scheduler.run_pass()
    world.run_queue()  # not sent: parked pending for a few seconds
    [charge] = world.charges()
    assert charge.status == "pending"
    world.wall = charge.resend_at
    world.cycle()
    world.wall += timedelta(minutes=30)
    world.cycle()
    [charge] = world.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "등록되지 않은 구매자")
    sub = world.subscription(sid)  # an unknown customer_uid is a hard decline: wait for a card
    assert sub.status == "past_due" and sub.next_charge_at == START + timedelta(days=3)
    assert [n.kind for n in world.notices(sid)] == ["payment_failed"]
    assert len(world.gateway.sent) == 2


# -- 2 and 8: operator actions never lose to the queue ---------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "reason"),
    [
        (
            lambda s, sid, wall: subscriptions.cancel(s, sid, START, wall, at_period_end=False),
            "canceled",
            "voided: canceled",
        ),
        (lambda s, sid, wall: subscriptions.pause(s, sid, START, wall), "paused", "voided: paused"),
        (
            lambda s, sid, wall: subscriptions.cancel(s, sid, START, wall, at_period_end=True),
            "canceled",
            "voided: canceled",
        ),
    ],
    ids=["cancel", "pause", "cancel-at-period-end-with-nothing-paid"],
)
def test_an_operator_action_voids_a_claimed_but_unsent_charge(
    world: World, action: object, status: str, reason: str
) -> None:
    sid = world.subscribe()
    ids = claimed(world)  # the charge waits in the queue
    with world.app.transaction() as session:
        action(session, sid, world.wall)  # type: ignore[operator]
    for charge_id in ids:
        world.pipeline.charge(charge_id)
    world.run_queue()
    [charge] = world.charges()
    assert (charge.status, charge.fail_reason) == ("failed", reason)
    assert world.gateway.sent == []
    assert world.subscription(sid).status == status
    assert [d["reason"] for d in event_data(world, sid, "charge_voided")] == [reason]


def test_cancel_at_period_end_asked_after_the_renewal_was_claimed_voids_the_renewal(
    world: World,
) -> None:
    sid = world.subscribe()
    world.cycle()  # period 1 paid
    world.clock.advance(timedelta(days=28))  # the renewal is due
    ids = claimed(world)
    assert len(ids) == 1
    with world.app.transaction() as session:
        subscriptions.cancel(session, sid, world.clock.now(), world.wall, at_period_end=True)
    for charge_id in ids:
        world.pipeline.charge(charge_id)
    world.run_queue()
    assert statuses(world.charges()) == [(1, 1, "paid"), (2, 1, "failed")]
    assert world.charges()[1].fail_reason == "voided: canceled"
    assert len(world.gateway.paid()) == 1
    assert world.subscription(sid).status == "canceled"
    [canceled] = event_data(world, sid, "subscription_canceled")
    assert canceled["detail"] == "cancel at period end asked after the period ended"


def test_a_charge_already_sent_is_settled_after_a_cancel_and_shown_to_the_operator(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])  # sent; the answer was lost
    with world.app.transaction() as session:
        subscriptions.cancel(session, sid, START, world.wall, at_period_end=False)
    world.run_queue()
    [charge] = world.charges()
    assert charge.status == "paid"  # PortOne holds it paid: recorded, refundable
    assert world.subscription(sid).status == "canceled"
    [late] = event_data(world, sid, "paid_after_cancel")
    assert late["merchant_uid"] == charge.merchant_uid


def test_a_resend_after_an_unknown_outcome_is_voided_when_the_subscription_was_paused(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["error_500"]  # nothing at PortOne, but we cannot know that
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    with world.app.transaction() as session:
        subscriptions.pause(session, sid, START, world.wall)
    world.wall += timedelta(seconds=world.app.settings.reconcile_after)
    world.cycle()  # the lookup finds nothing after the window: would be sent again
    world.cycle()
    [charge] = world.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "voided: paused")
    assert len(world.gateway.sent) == 1


def test_a_payment_is_recorded_when_the_pending_next_plan_was_archived_meanwhile(
    app: App,
) -> None:
    world = World(app, TWO_PLANS)
    sid = world.subscribe()
    world.cycle()
    world.clock.advance(timedelta(days=28))
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])  # the renewal is in flight
    with world.app.transaction() as session:
        subscriptions.change_plan(session, sid, "yearly", world.clock.now())
        subscriptions.cancel(session, sid, world.clock.now(), world.wall, at_period_end=False)
    with world.app.transaction() as session:
        only_monthly = parse_catalog(
            TWO_PLANS.split("  - {id: yearly", maxsplit=1)[0], "c.yaml", "Asia/Seoul"
        )
        plan_store.load_catalog(session, only_monthly, "c.yaml", "sha2", world.clock.now())
    world.run_queue()
    assert statuses(world.charges()) == [(1, 1, "paid"), (2, 1, "paid")]
    assert world.publisher.charges == [] and world.publisher.reconciles == []


# -- 3: daylight saving ------------------------------------------------------------------------

DST_CATALOG = """
plans:
  - {id: nightly, name: 야간, amount: 1000, cron: "30 1 * * *", timezone: America/New_York,
     prorate_first: false}
"""


def test_a_cron_plan_at_the_repeated_hour_is_charged_once_on_the_fall_back_night(
    app: App,
) -> None:
    world = World(app, DST_CATALOG)
    start = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    world.clock.moment = start
    sid = world.subscribe(start=start, plan="nightly")
    for hours in range(0, 24 * 4, 1):
        world.clock.moment = start + timedelta(hours=hours)
        world.cycle()
    starts = [c.period_start for c in world.charges(sid)]
    # 01:30 EDT on Oct 31, 01:30 EDT (not also 01:30 EST) on Nov 1, 01:30 EST on Nov 2, 3
    assert starts == [
        datetime(2026, 10, 31, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 3, 6, 30, tzinfo=UTC),
    ]
    assert all(c.status == "paid" for c in world.charges(sid))


# -- 4 and 10: one bad row never stops the scheduler ------------------------------------------


def test_a_subscription_on_an_archived_plan_is_set_aside_and_the_others_are_charged(
    app: App,
) -> None:
    world = World(app, TWO_PLANS)
    bad = world.subscribe("cust-bad", plan="yearly")
    good = [world.subscribe(f"cust-{n}") for n in range(3)]
    with world.app.transaction() as session:  # what the race left behind
        session.execute(update(PlanRow).where(PlanRow.id == "yearly").values(archived_at=START))
    report = world.scheduler.run_pass()
    world.run_queue()
    assert report.claimed == 3
    assert {c.subscription_id for c in world.charges() if c.status == "paid"} == set(good)
    sub = world.subscription(bad)
    assert sub.set_aside_reason is not None and "yearly" in sub.set_aside_reason
    with world.app.transaction() as session:
        report_ = status_report(session, world.clock.now())
    assert report_.set_aside == 1
    world.scheduler.run_pass()  # the row no longer poisons every pass
    assert [d["reason"] for d in event_data(world, bad, "set_aside")] == [sub.set_aside_reason]


def test_a_catalog_load_racing_subscription_create_never_archives_a_plan_in_use(
    app: App, db_url: str
) -> None:
    world = World(app, TWO_PLANS)
    world.subscribe("cust-0")  # so that the customer exists
    only_monthly = parse_catalog(
        TWO_PLANS.split("  - {id: yearly", maxsplit=1)[0], "c.yaml", "Asia/Seoul"
    )
    created = threading.Event()
    outcomes: dict[str, str] = {}

    def create() -> None:
        try:
            with world.app.transaction() as session:
                subscriptions.create_subscription(session, "cust-0", "yearly", START, START)
                created.set()
                session.execute(text("SELECT pg_sleep(0.5)"))  # the load runs meanwhile
            outcomes["create"] = "ok"
        except Exception as exc:
            outcomes["create"] = type(exc).__name__
            created.set()

    def load() -> None:
        created.wait(5)
        try:
            with world.app.transaction() as session:
                plan_store.load_catalog(session, only_monthly, "c.yaml", "sha2", START)
            outcomes["load"] = "ok"
        except Exception as exc:
            outcomes["load"] = type(exc).__name__

    threads = [threading.Thread(target=create), threading.Thread(target=load)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"create": "ok", "load": "CatalogError"}
    with world.app.transaction() as session:
        row = session.get(PlanRow, "yearly")
        assert row is not None and row.archived_at is None


# -- 6: PortOne answers other than paid and failed ---------------------------------------------


def test_a_net_cancelled_payment_is_unpaid_and_goes_to_dunning(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_as:cancelled"]  # approved, then cancelled by the PG
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "failed" and "cancelled" in (charge.fail_reason or "")
    assert world.subscription(sid).status == "past_due"
    world.clock.advance(timedelta(days=1))
    world.cycle()
    assert statuses(world.charges()) == [(1, 1, "failed"), (1, 2, "paid")]


def test_a_payment_refunded_in_the_console_while_our_answer_was_lost_is_paid_and_refunded(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    world.gateway.refund_in_console(world.charges()[0].merchant_uid)
    world.run_queue()
    [charge] = world.charges()
    assert (charge.status, charge.refunded_amount) == ("paid", 9900)
    assert world.subscription(sid).period_no == 2  # the period was paid; the merchant refunded
    assert [d["amount"] for d in event_data(world, sid, "charge_refunded")] == [9900]


def test_a_payment_left_ready_is_final_and_unpaid(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_as:ready"]
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "failed" and "ready" in (charge.fail_reason or "")
    assert world.subscription(sid).status == "past_due"


def test_lookups_that_keep_failing_back_off_and_never_poll_in_a_loop(world: World) -> None:
    world.subscribe()
    world.gateway.script = ["error_500"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])
    world.gateway.find_paid = lambda merchant_uid: __import__(  # type: ignore[method-assign]
        "billing.portone.answers", fromlist=["Exchange"]
    ).Exchange(503, b"busy")
    waits = []
    for _ in range(14):
        world.publisher.take()
        [charge] = world.charges()
        world.wall = charge.next_lookup_at or world.wall
        world.scheduler.run_pass()
        world.run_queue(rounds=1)
        [after] = world.charges()
        assert after.next_lookup_at is not None
        waits.append((after.next_lookup_at - world.wall).total_seconds())
    assert min(waits[:3]) < 30 and min(waits[9:]) >= 128  # capped exponential, not 0.5 s
    assert after.status == "unknown"  # open only while PortOne cannot answer


# -- 7: the card-attempt cap counts declines, not payments --------------------------------------

DAILY = """
plans:
  - {id: daily, name: 일간, amount: 1000, interval: 1 day}
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month}
"""


def test_a_daily_plan_is_charged_every_day_of_the_month(app: App) -> None:
    world = World(app, DAILY)
    sid = world.subscribe(plan="daily")
    for _ in range(31):
        world.cycle()
        world.clock.advance(timedelta(days=1))
    assert len([c for c in world.charges(sid) if c.status == "paid"]) == 31
    assert event_data(world, sid, "attempt_postponed") == []


def test_sixteen_subscriptions_on_one_card_are_all_charged(app: App) -> None:
    world = World(app, DAILY)
    ids = [world.subscribe("one-card", plan="monthly") for _ in range(16)]
    world.cycle()
    world.cycle()  # the 16th waits for the first 15 to be answered, not for a month
    assert sorted(c.subscription_id for c in world.charges() if c.status == "paid") == ids


def test_a_card_with_fifteen_declines_in_thirty_days_is_not_tried_again(app: App) -> None:
    world = World(app, DAILY)
    ids = [world.subscribe("bad-card", plan="monthly") for _ in range(16)]
    world.gateway.script = ["decline"] * 40
    world.cycle()
    world.cycle()
    assert len([c for c in world.charges() if c.status == "failed"]) == 15
    assert len(world.gateway.sent) == 15
    [postponed] = [sid for sid in ids if event_data(world, sid, "attempt_postponed")]
    assert world.subscription(postponed).status == "active"


# -- the review's suspicions -----------------------------------------------------------------


def test_a_card_updated_while_a_retry_is_in_flight_is_retried_at_once_when_it_fails(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["decline"]
    world.cycle()  # attempt 1 declined: past due, retry tomorrow
    world.clock.advance(timedelta(days=1))
    world.gateway.script = ["decline"]
    ids = claimed(world)  # attempt 2 is in flight
    with world.app.transaction() as session:
        subscriptions.card_updated(session, "cust-1", world.clock.now())
    for charge_id in ids:
        world.pipeline.charge(charge_id)
    assert world.subscription(sid).next_charge_at == world.clock.now()  # not in two days
    world.cycle()
    assert statuses(world.charges()) == [(1, 1, "failed"), (1, 2, "failed"), (1, 3, "paid")]


def test_a_decline_learned_late_still_gets_the_whole_dunning_schedule(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["timeout_as:failed", "decline", "decline"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])  # unknown...
    world.clock.advance(timedelta(days=2))  # ...for two days (PortOne was unreachable)
    world.run_queue()
    for _ in range(8):
        world.cycle()
        world.clock.advance(timedelta(days=1))
    # retry_after [1d, 3d]: both retries are made (the first one, whose time passed while
    # the outcome was unknown, at once), then dunning ends
    assert [c.created_at - START for c in world.charges()] == [
        timedelta(0),
        timedelta(days=2),
        timedelta(days=3),
    ]
    assert world.subscription(sid).status == "canceled"


def test_a_second_paid_attempt_of_one_period_is_recorded_and_raised_to_the_operator(
    world: World,
) -> None:
    sid = world.subscribe()
    world.gateway.script = ["decline"]
    world.cycle()
    world.clock.advance(timedelta(days=1))
    world.gateway.script = ["timeout_after_commit"]
    world.scheduler.run_pass()
    world.pipeline.charge(world.publisher.take()[0][0])  # attempt 2 paid, answer lost
    first, second = world.charges()
    world.gateway.ledger[first.merchant_uid][0]["status"] = "paid"  # PortOne paid both
    with world.app.transaction() as session:  # attempt 1 is learned paid (a late notice)
        from billing.services.settlement import settle_paid

        row = session.get(Charge, first.id)
        assert row is not None
        settle_paid(session, row, "imps_first", START, world.wall, world.pipeline.plans)
    world.run_queue()
    first, second = world.charges()
    assert (first.status, second.status) == ("paid", "paid")
    assert second.duplicate_of == first.id
    assert world.publisher.reconciles == []  # not retried forever
    assert [d["merchant_uid"] for d in event_data(world, sid, "duplicate_payment")] == [
        second.merchant_uid
    ]
    with world.app.transaction() as session:
        assert status_report(session, world.clock.now()).duplicate_payments == 1


def test_a_database_error_while_recording_an_answer_does_not_lose_the_payment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from billing.services import pipeline

    sid = world.subscribe()
    real = pipeline.finish_charges
    failures = [OperationalError("UPDATE", {}, Exception("server closed the connection"))]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "finish_charges", flaky)
    monkeypatch.setattr(pipeline, "RECORD_BACKOFF", 0.01)
    world.cycle()
    [charge] = world.charges()
    assert charge.status == "paid" and charge.sends == 1
    assert world.subscription(sid).period_no == 2


def test_a_call_that_waited_too_long_in_the_worker_is_not_sent(world: World) -> None:
    world.subscribe()
    ids = claimed(world)
    # the sender reads the system clock world.wall sets: it begins at world.wall...
    started = world.wall
    calls = world.pipeline.sender.calls

    class LateExecutor:
        """The call pool is so busy that the call starts after the window."""

        def map(self, fn, works):  # type: ignore[no-untyped-def]
            world.wall = started + timedelta(seconds=world.app.settings.reconcile_after)
            return calls.map(fn, works)

    world.pipeline.sender.calls = LateExecutor()  # type: ignore[assignment]
    for charge_id in ids:
        world.pipeline.charge(charge_id)
    [charge] = world.charges()
    assert world.gateway.sent == []
    assert charge.status == "pending"
    assert charge.resend_at is not None
    world.pipeline.sender.calls = calls
    world.wall = charge.resend_at
    world.cycle()
    assert world.charges()[0].status == "paid" and len(world.gateway.sent) == 1


def test_status_report_counts_none_set_aside_on_a_healthy_database(world: World) -> None:
    world.subscribe()
    world.cycle()
    with world.app.transaction() as session:
        report = status_report(session, world.clock.now())
        assert (report.set_aside, report.duplicate_payments) == (0, 0)
        assert session.scalar(select(Subscription.set_aside_reason)) is None


def test_the_invariants_read_portones_cancelled_payments_by_whether_they_were_paid(
    world: World,
) -> None:
    from billing import invariants

    world.subscribe()
    world.gateway.script = ["timeout_as:cancelled"]  # net-cancelled: the charge is failed
    world.cycle()
    [charge] = world.charges()
    ledger = [p for payments in world.gateway.ledger.values() for p in payments]
    with world.app.transaction() as session:
        assert invariants.check(session, ledger, world.clock.now()) == []
        refunded = [{**ledger[0], "paid_at": 5}]  # had it been paid, it must be recorded paid
        [anomaly] = invariants.check(session, refunded, world.clock.now())
    assert anomaly.kind == "gateway_payment_not_recorded" and charge.merchant_uid in anomaly.detail


def test_a_restored_pending_charge_is_looked_up_before_it_is_sent_again(world: World) -> None:
    """The chaos run's restore found it: a charge parked pending (a transient answer) in the
    backup was declined after the backup, and a later attempt of its period paid; sending it
    again after the restore re-used a declined merchant_uid, and PortOne paid the period
    twice. Work that old is looked up first, whatever publishes it."""
    sid = world.subscribe()
    world.scheduler.run_pass()
    [charge_id] = world.publisher.take()[0]
    with world.app.transaction() as session:  # what the backup holds: parked after "not sent"
        session.execute(
            update(Charge).where(Charge.id == charge_id).values(sends=1, resend_at=world.wall)
        )
    key = world.subscription(sid).key
    world.gateway.script = ["decline", "decline", "approve"]  # what happened after the backup
    for attempt in (1, 2, 3):
        world.gateway.again(ChargeRequest("cust-1", f"sub-{key}-1-{attempt}", 9900, "월간"))
    world.gateway.sent.clear()
    world.clock.advance(timedelta(days=4))  # the restore: days later, the row is pending again
    world.pipeline.charge(charge_id)
    for _ in range(6):
        world.cycle()
    assert len(world.gateway.paid()) == 1  # never paid twice
    assert world.gateway.sent == []  # nothing was sent: PortOne knew every attempt
    paid = [c for c in world.charges() if c.status == "paid"]
    assert [c.merchant_uid for c in paid] == [f"sub-{key}-1-3"]
    assert world.subscription(sid).period_no == 2
