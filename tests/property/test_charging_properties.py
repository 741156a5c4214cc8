"""The charging services (claims, charging, reconciliation) on real PostgreSQL, driven by
random sequences of gateway answers and events: lost, duplicated and reordered messages,
workers dying before or after sending, both clocks moving, pauses, cancels and card updates.

Whatever the sequence, once the faults stop and the product settles: no period is paid twice,
every payment the (fake) gateway holds is recorded as paid with its imp_uid and nothing else
is, no charge is left open, and the days credited to a subscription never overlap.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from billing import invariants
from billing.app import App
from billing.db.tables import Base, Charge, Event
from billing.errors import BillingError
from billing.services import subscriptions
from billing.services.charging import begin_charge
from billing.services.status import outstanding
from tests.world import START, World

CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 3d], final_action: cancel}}
  - {id: trial, name: 체험, amount: 14900, interval: 1 month, trial_days: 3,
     dunning: {retry_after: [12h], final_action: pause}}
"""
TABLES = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
ANSWERS = [
    "approve",
    "decline",
    "decline:분실신고 카드",
    "refuse",
    "error_500",
    "timeout_after_commit",
    "not_sent",
]
WALL_STEPS = [1, 30, 301, 3601]  # seconds: inside and past the reconciliation window
CLOCK_STEPS = [1, 24, 72, 24 * 31, 24 * 31]  # hours of business time


class Bench(World):
    """A World (real services, fake PortOne, a broker we control message by message, both
    clocks in our hands) on an emptied database, with two subscriptions."""

    def __init__(self, app: App) -> None:
        with app.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        super().__init__(app, CATALOG)
        self.queue: list[tuple[str, int]] = []
        self.ids = [
            self.subscribe(f"cust-{n}", START, plan) for n, plan in enumerate(("monthly", "trial"))
        ]

    def collect(self) -> None:
        charges, reconciles = self.publisher.take()
        self.queue += [("charge", i) for i in charges] + [("reconcile", i) for i in reconciles]

    def run(self, message: tuple[str, int]) -> None:
        kind, charge_id = message
        if kind == "charge":
            self.pipeline.charge(charge_id)
        else:
            self.pipeline.reconcile(charge_id)

    def take(self, index: int) -> tuple[str, int] | None:
        return self.queue.pop(index % len(self.queue)) if self.queue else None

    def die(self, index: int, sent: bool) -> None:
        """A worker takes a charge message, commits processing, maybe sends, then is killed."""
        message = self.take(index)
        if message is None or message[0] != "charge":
            return
        with self.app.transaction() as session:
            work = begin_charge(
                session, message[1], self.clock.now(), self.pipeline.timing(), self.pipeline.plans
            )
        if work is not None and sent:
            self.gateway.again(work.request)  # the answer dies with the worker

    def command(self, kind: str, n: int) -> None:
        sid, now = self.ids[n % 2], self.clock.now()
        try:
            with self.app.transaction() as session:
                if kind == "pause":
                    subscriptions.pause(session, sid, now, self.wall)
                elif kind == "resume":
                    subscriptions.resume(session, sid, now)
                elif kind == "cancel":
                    subscriptions.cancel(session, sid, now, self.wall, at_period_end=n % 4 < 2)
                elif kind == "card_updated":
                    subscriptions.card_updated(session, f"cust-{n % 2}", now)
        except BillingError:
            pass  # refused: nothing changed

    def step(self, kind: str, n: int) -> None:
        if kind == "pass":
            self.scheduler.run_pass()
        elif kind == "deliver":
            message = self.take(n)
            if message is not None:
                self.run(message)
        elif kind == "duplicate" and self.queue:
            self.run(self.queue[n % len(self.queue)])
        elif kind == "drop":
            self.take(n)
        elif kind == "script":
            self.gateway.script.append(ANSWERS[n % len(ANSWERS)])
        elif kind == "wall":
            self.wall += timedelta(seconds=WALL_STEPS[n % len(WALL_STEPS)])
        elif kind == "clock":
            self.clock.advance(timedelta(hours=CLOCK_STEPS[n % len(CLOCK_STEPS)]))
        elif kind == "die":
            self.die(n, sent=n % 2 == 0)
        else:
            self.command(kind, n)
        self.collect()

    def settle(self, rounds: int = 40, *, faults_off: bool = True) -> None:
        """Faults off, time passes on the system clock, every message is delivered."""
        if faults_off:
            self.gateway.script.clear()
        for _ in range(rounds):
            self.wall += timedelta(seconds=3601)
            self.scheduler.run_pass()
            self.collect()
            for _ in range(50):
                message = self.take(0)
                if message is None:
                    break
                self.run(message)
                self.collect()
            with self.app.transaction() as session:
                if outstanding(session, self.clock.now()).total == 0 and not self.queue:
                    return
        raise AssertionError("the product did not settle")

    def ledger(self) -> list[dict[str, object]]:
        return [p for attempts in self.gateway.ledger.values() for p in attempts]

    def overlaps(self) -> list[str]:
        """Paid charges of one subscription whose days overlap (superseded ones excepted:
        test_pausing_and_resuming_while_a_charge_is_unknown_... covers those)."""
        with self.app.transaction() as session:
            superseded = set(
                session.scalars(
                    select(Event.charge_id).where(Event.kind == "payment_for_superseded_period")
                )
            )
            paid = session.scalars(
                select(Charge).where(Charge.status == "paid").order_by(Charge.period_start)
            ).all()
        found = []
        for sid in self.ids:
            mine = [c for c in paid if c.subscription_id == sid and c.id not in superseded]
            for a, b in itertools.pairwise(mine):
                if a.period_end > b.period_start:
                    found.append(f"{a.merchant_uid} and {b.merchant_uid}")
        return found


KINDS = (
    ["pass"] * 3
    + ["deliver"] * 5
    + ["script"] * 4
    + ["wall"] * 2
    + ["clock"] * 3
    + [
        "duplicate",
        "drop",
        "die",
        "pause",
        "resume",
        "cancel",
        "card_updated",
    ]
)
steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 100)), min_size=10, max_size=50)
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@BOUNDED
@given(steps)
def test_no_sequence_pays_a_period_twice_and_the_gateway_agrees_with_the_database(
    app: App, sequence: list[tuple[str, int]]
) -> None:
    bench = Bench(app)
    for kind, n in sequence:
        bench.step(kind, n)
    bench.settle()
    with app.transaction() as session:
        anomalies = invariants.check(session, bench.ledger(), bench.clock.now())
        outcomes = session.scalars(
            select(Event.data["outcome"].as_string()).where(Event.kind == "gateway_answer")
        ).all()
    for outcome in sorted(set(outcomes)):
        event(f"gateway answered {outcome}")
    event(f"{len(bench.gateway.paid())} payments")
    assert anomalies == []
    assert bench.overlaps() == []


def test_pausing_and_resuming_while_a_charge_is_unknown_charges_the_same_days_once(
    app: App,
) -> None:
    bench = Bench(app)
    sid = bench.ids[0]
    bench.gateway.script = ["timeout_after_commit"]  # PortOne takes the money, the answer is lost
    bench.step("pass", 0)
    bench.step("deliver", 0)
    bench.command("pause", 0)  # the merchant pauses, then resumes at once
    bench.command("resume", 0)
    bench.settle()
    payments = [p for p in bench.gateway.paid() if str(p["merchant_uid"]).startswith("sub-")]
    with app.transaction() as session:
        charges = session.scalars(select(Charge).where(Charge.subscription_id == sid)).all()
        paid = [(c.period_start, c.period_end) for c in charges if c.status == "paid"]
    assert len(payments) == 1, f"{len(payments)} payments for the days {paid}"


def test_a_decline_learned_late_still_gets_the_retries_the_policy_promises(app: App) -> None:
    bench = Bench(app)  # monthly: retry_after [1d, 3d] -> 3 attempts, then cancel
    sid = bench.ids[0]
    bench.command("cancel", 3)  # the other subscription (a trial) leaves the gateway alone
    bench.gateway.script = ["decline", "error_500", "decline"]
    bench.step("pass", 0)
    bench.step("deliver", 0)  # attempt 1: declined at START; retries at +1d and +3d
    bench.clock.advance(timedelta(days=1))
    bench.step("pass", 0)
    bench.step("deliver", 0)  # attempt 2 at START+1d: HTTP 500, outcome unknown
    bench.clock.advance(timedelta(days=3))  # PortOne stays silent while the days go by
    bench.settle(faults_off=False)  # nothing found, the merchant_uid is re-sent: declined
    with app.transaction() as session:
        attempts = session.scalars(select(Charge).where(Charge.subscription_id == sid)).all()
        status = subscriptions.get_subscription(session, sid).status
    # the policy's third attempt (due at +3d, already past when the decline was learned) is
    # made at once instead of dunning ending after two
    assert [(c.attempt, c.status) for c in attempts] == [(1, "failed"), (2, "failed"), (3, "paid")]
    assert status == "active"
