"""One chaos run, start to finish: boot, populate, bill under fire, settle, judge, clean up."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from billing import invariants
from billing.app import App, build_app
from billing.catalog_file import load_catalog_file
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db import migrate
from billing.db.engine import make_engine
from billing.db.tables import Charge, Event, Subscription
from billing.domain.calendar import add_months_clamped, periods
from billing.domain.plans import Catalog
from billing.services import plan_store
from billing.services.claims import CHARGEABLE, OPEN
from billing.services.status import outstanding
from chaos import checks, population, processes
from chaos.cluster import ClusterError, Postgres, Redis
from chaos.faults import DEFAULT_FAULTS, Mayhem, SandboxAdmin, plan_mayhem
from chaos.fleet import Fleet
from chaos.operators import Operators
from chaos.options import Options, parse
from chaos.population import Population
from chaos.processes import ROOT, Managed, ignore_termination, stop_on_termination
from chaos.report import Figures, render

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2027, 1, 1, tzinfo=SEOUL).astimezone(UTC)  # a 31-day month
CATALOG = ROOT / "chaos" / "plans.yaml"
PORTONE_TIMEOUT = 1.5  # seconds; the sandbox holds a commit_then_timeout answer longer
RECONCILE_AFTER = 3
HANG_SECONDS = 5.0
DB_OUTAGE = 180.0  # seconds the driver keeps retrying while PostgreSQL is down

T = TypeVar("T")


def say(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class ChaosRun:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.root = Path(tempfile.mkdtemp(prefix="billing-chaos-"))
        self.postgres = Postgres(self.root)
        self.redis = Redis(self.root)
        self.sandbox: Managed | None = None
        self.admin: SandboxAdmin | None = None
        self.fleet: Fleet | None = None
        self.app: App | None = None
        self.operators: Operators | None = None
        self.figures = Figures(options)
        self._phase_started = time.monotonic()
        self._dumped_at: datetime | None = None
        self._env: dict[str, str] = {}
        self._started_at = datetime.now(UTC)
        self._backups: list[threading.Thread] = []

    # -- the run -----------------------------------------------------------------------------

    def execute(self) -> int:
        env = self._env = self._boot()
        catalog = load_catalog_file(CATALOG, "Asia/Seoul")
        people = self._populate(catalog)
        end = months_after(START, self.options.months)
        steps = self._steps(START, end)
        mayhem = self._mayhem(people, catalog, steps)
        self.operators = Operators(
            self._app(),
            random.Random(self.options.seed + 1),
            sorted(people.ids_of(population.Cohort.OPERATED)),
        )
        self.operators.plan(mayhem.load, self.options.operator_actions)
        self._lap("setup")
        self.fleet = Fleet(
            self.root,
            env,
            workers=self.options.workers,
            concurrency=self.options.concurrency,
            say=say,
        )
        self.fleet.start()
        say(f"{len(self.fleet.members)} product processes up; faults on")
        self._admin().set_faults(DEFAULT_FAULTS, seed=self.options.seed)
        self._lap("start")
        self._bill(steps, mayhem)
        self._admin().set_faults({}, seed=None)
        self.fleet.calm()
        self._operators().wait()
        for thread in self._backups:
            thread.join(300)
        if self.fleet.failures:
            raise ClusterError("; ".join(self.fleet.failures))
        self._lap("faults")
        grace = [end + timedelta(days=d + 1) for d in range(self.options.grace_days)]
        say("faults off; the dunning retries come due")
        self._bill(grace, Mayhem())
        self._settle()
        self._reconcile_ledger(self._started_at)  # the daily run, over the whole run
        now = self._settle()
        self._lap("grace and settle")
        self._judge(catalog, people, now)
        self.figures.first_day = START.astimezone(SEOUL).date().isoformat()
        self.figures.last_day = end.astimezone(SEOUL).date().isoformat()
        print(render(self.figures), flush=True)
        return 1 if self.figures.anomalies else 0

    def _boot(self) -> dict[str, str]:
        say(f"booting in {self.root}")
        self.postgres.init().start()
        url = self.postgres.create_database("billing")
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        self.redis.start()
        self.sandbox = processes.sandbox(
            {}, self.root / "sandbox.log", HANG_SECONDS, self.options.seed
        ).start()
        portone = processes.sandbox_url(self.sandbox)
        self.admin = SandboxAdmin(portone)
        env = {
            "BILLING_DATABASE_URL": url,
            "BILLING_BROKER_URL": self.redis.url,
            "BILLING_PORTONE_URL": portone,
            "BILLING_SANDBOX": "1",
            "BILLING_PORTONE_TIMEOUT": str(PORTONE_TIMEOUT),
            "BILLING_RECONCILE_AFTER": str(RECONCILE_AFTER),
            "BILLING_PLANS": str(CATALOG),
        }
        self.app = build_app(load_settings(env), pool_size=4)
        self._clock().set(START)
        return env

    def _populate(self, catalog: Catalog) -> Population:
        weights = population.SHORT_PLAN_WEIGHTS if self.options.short else population.PLAN_WEIGHTS
        people = population.draw(self.rng, self.options.subscriptions, START, weights)
        app = self._app()
        with app.transaction() as session:
            plan_store.load_catalog(session, catalog, str(CATALOG), "chaos", START)
        for batch in population.batches(people):
            with app.transaction() as session:
                people.subscription_ids.update(population.subscribe(session, batch, START))
        admin = self._admin()
        for member in people.cohort(population.Cohort.ALWAYS_DECLINE):
            admin.default(member.customer_uid, "decline:잔액부족")
        for member in people.cohort(population.Cohort.DECLINES_TWICE):
            admin.script(member.customer_uid, ["decline:한도초과", "decline:한도초과"])
        self.figures.cohorts = Counter(str(member.cohort) for member in people.members)
        say(f"{len(people.members)} subscriptions created")
        return people

    def _steps(self, start: datetime, end: datetime) -> list[datetime]:
        step = timedelta(hours=self.options.step_hours)
        count = max(1, -(-(end - start) // step))
        return [min(end, start + step * (k + 1)) for k in range(count)]

    def _mayhem(self, people: Population, catalog: Catalog, steps: list[datetime]) -> Mayhem:
        """Where the charges fall, step by step, so that blows land on busy steps."""
        load = [0] * len(steps)
        for member in people.members:
            plan = catalog.plan(member.plan_id)
            assert plan is not None
            for period in periods(plan, member.start):
                if period.start > steps[-1]:
                    break
                index = next(i for i, moment in enumerate(steps) if period.start <= moment)
                load[index] += 1
        o = self.options
        mayhem = plan_mayhem(
            self.rng,
            load,
            worker_kills=o.worker_kills,
            scheduler_kills=o.scheduler_kills,
            workers=o.workers,
            schedulers=2,
            redis_restart=o.redis_restart,
            postgres_restart=o.postgres_restart,
            restore_after=o.restore_after,
        )
        mayhem.load = load
        return mayhem

    def _bill(self, steps: list[datetime], mayhem: Mayhem) -> None:
        fleet, operators = self._fleet(), self._operators()
        for index, moment in enumerate(steps):
            self._db(partial(self._clock().set, moment))
            for blow in mayhem.at(index):
                fleet.strike(blow, self.postgres, self.redis)
            for act in operators.at(index):
                operators.act(act, moment)
            if index in (mayhem.dump_step, mayhem.restore_step):
                self._backup(moment, restore=index == mayhem.restore_step)
            self.figures.steps += 1
            began = time.monotonic()
            if not self._drain_step(moment):
                self.figures.slow_steps += 1
            self.figures.step_seconds.append(time.monotonic() - began)
            if (index + 1) % 10 == 0:
                kills = sum(n for what, n in fleet.counts.items() if what.endswith("_kills"))
                say(f"clock at {moment.astimezone(SEOUL):%Y-%m-%d}; {kills} kills so far")

    def _backup(self, moment: datetime, restore: bool) -> None:
        """Take a pg_dump of the live database, or restore the one taken, while the step's
        charges are in flight (in a thread: the calendar does not wait). A restore brings
        back the database, not the past: the test clock, which lives in the database, is put
        back to the step's moment in the copy before it replaces the live one."""
        dump = self.root / "billing.dump"

        def take() -> None:
            time.sleep(self.rng.uniform(0.1, 0.6))
            self._dumped_at = datetime.now(UTC)
            self.postgres.dump("billing", dump)
            say("pg_dump taken while charges were in flight")

        def put_back() -> None:
            time.sleep(self.rng.uniform(0.1, 0.6))
            assert self._dumped_at is not None
            clock = f"UPDATE test_clock SET now = '{moment.isoformat()}'"  # noqa: S608 (our own ISO time)
            self.postgres.restore("billing", dump, prepare=clock)
            lost = self._operators().forget_after(self._dumped_at)
            self.figures.restores += 1
            say(f"database restored from the dump ({lost} operator actions undone)")
            self._reconcile_ledger(self._dumped_at)  # what the runbook says to do next

        thread = threading.Thread(target=put_back if restore else take, daemon=True)
        thread.start()
        self._backups.append(thread)
        if restore:
            thread.join(300)  # the restore replaces the database the step is judged on

    def _reconcile_ledger(self, since: datetime) -> None:
        """``billing reconcile ledger --since``, as an operator runs it after a restore and
        the scheduler once a day: PortOne's ledger repairs what this database forgot."""
        command = [
            sys.executable,
            "-m",
            "billing",
            "reconcile",
            "ledger",
            "--json",
            "--since",
            since.isoformat(),
        ]
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=processes.product_env(self._env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise ClusterError(f"billing reconcile ledger failed: {done.stderr.strip()[-300:]}")
        findings = json.loads(done.stdout)["findings"]
        self.figures.ledger_repairs += sum(
            1 for f in findings if not str(f["verdict"]).startswith("reported")
        )
        self.figures.ledger_reported += sum(
            1 for f in findings if str(f["verdict"]).startswith("reported")
        )

    def _drain_step(self, now: datetime) -> bool:
        """Wait until everything due at ``now`` is claimed and every charge is settled.

        Reconciliation windows run on the system clock while the test clock jumps a day per
        step: a step that moved on before an unknown outcome was resolved would learn that
        outcome days late in business time. The wait is capped (a lost reconcile message
        waits out a 60 s lease); the final settle has no such cap."""
        deadline = time.monotonic() + self.options.step_timeout
        while time.monotonic() < deadline:
            if self._db(lambda: self._busy(now)) == 0:
                return True
            time.sleep(0.1)
        return False

    def _busy(self, now: datetime) -> int:
        open_charge = exists().where(
            Charge.subscription_id == Subscription.id, Charge.status.in_(OPEN)
        )
        with self._app().transaction() as session:
            due = session.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(
                    Subscription.next_charge_at <= now,
                    Subscription.status.in_(CHARGEABLE),
                    ~open_charge,
                )
            )
            moving = session.scalar(
                select(func.count()).select_from(Charge).where(Charge.status.in_(OPEN))
            )
        return int(due or 0) + int(moving or 0)

    def _settle(self) -> datetime:
        """Nothing due at the clock's now and no open charge, or a harness error."""
        say("settling")
        now = self._db(lambda: self._clock().now())
        deadline = time.monotonic() + self.options.settle_timeout
        while time.monotonic() < deadline:

            def left() -> int:
                with self._app().transaction() as session:
                    return outstanding(session, now).total

            if self._db(left) == 0:
                return now
            time.sleep(0.25)
        raise ClusterError(f"the product did not settle in {self.options.settle_timeout:g} s")

    def _judge(self, catalog: Catalog, people: Population, now: datetime) -> None:
        admin, f = self._admin(), self.figures
        ledger = admin.ledger()
        f.gateway = admin.stats()
        operators = self._operators()
        with self._app().transaction() as session:
            f.anomalies = invariants.check(session, ledger, now)
            extra, f.tally = checks.check(session, catalog, people.cohort_of(), ledger, now)
            f.anomalies += extra
            f.anomalies += checks.stopped(session, operators.log)
            f.refunded_at_portone = _count_refunded(session)
            f.subscriptions = _by_status(session, Subscription.status)
            f.charges = _by_status(session, Charge.status)
            f.sends = int(session.scalar(select(func.sum(Charge.sends))) or 0)
            attempted = select(Charge.subscription_id, Charge.period_no).distinct().subquery()
            counted = session.scalar(select(func.count()).select_from(attempted))
            f.periods_attempted = int(counted or 0)
        logs = self.root / "logs"
        f.anomalies += checks.scheduler_failures(
            path.read_text(errors="replace") for path in sorted(logs.glob("scheduler-*.log"))
        )
        f.operators = operators.counts
        if f.anomalies and self.options.keep:
            self._explain(ledger, f.anomalies)
        fleet = self._fleet()
        f.fleet = fleet.counts
        f.fleet["worker_crashes"] = fleet.crashes()
        f.unexpected = fleet.exits

    def _explain(self, ledger: list[dict[str, Any]], anomalies: list[invariants.Anomaly]) -> None:
        """With --keep: the ledger and the history of the subscriptions an anomaly names, in
        the run's directory (explain.txt), for the person who reads it next."""
        keys = {word for a in anomalies for word in a.detail.replace("-", " ").split()}
        lines = []
        with self._app().transaction() as session:
            for sub in session.scalars(select(Subscription).where(Subscription.key.in_(keys))):
                lines.append(f"subscription {sub.id} key {sub.key} {sub.status} {sub.plan_id}")
                lines += [
                    f"  ledger {p['merchant_uid']} {p['status']} paid_at={p['paid_at']} "
                    f"started_at={p['started_at']}"
                    for p in ledger
                    if str(p["merchant_uid"]).startswith(f"sub-{sub.key}-")
                ]
                query = select(Event).where(Event.subscription_id == sub.id).order_by(Event.id)
                lines += [
                    f"  {e.occurred_at} {e.recorded_at} {e.kind} {e.data}"
                    for e in session.scalars(query)
                ]
        (self.root / "explain.txt").write_text("\n".join(lines))
        say(f"anomalies explained in {self.root / 'explain.txt'}")

    # -- plumbing ----------------------------------------------------------------------------

    def _lap(self, phase: str) -> None:
        now = time.monotonic()
        self.figures.seconds[phase] = now - self._phase_started
        self._phase_started = now

    def _db(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying while PostgreSQL is down (it is, on purpose, once)."""
        deadline = time.monotonic() + DB_OUTAGE
        while True:
            try:
                return action()
            except DBAPIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _app(self) -> App:
        assert self.app is not None
        return self.app

    def _clock(self) -> DatabaseClock:
        clock = self._app().clocks.billing
        assert isinstance(clock, DatabaseClock)
        return clock

    def _admin(self) -> SandboxAdmin:
        assert self.admin is not None
        return self.admin

    def _fleet(self) -> Fleet:
        assert self.fleet is not None
        return self.fleet

    def _operators(self) -> Operators:
        assert self.operators is not None
        return self.operators

    def cleanup(self) -> None:
        """Stop every process this run started and remove its directory (unless --keep)."""
        steps: list[Callable[[], None]] = [self.redis.stop, self.postgres.stop]
        if self.sandbox is not None:
            steps[:0] = [self.sandbox.kill, self.sandbox.close_log]
        if self.admin is not None:
            steps.insert(0, self.admin.close)
        if self.app is not None:
            steps.insert(0, self.app.close)
        if self.fleet is not None:
            steps.insert(0, self.fleet.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # cleanup goes on whatever one step does
                say(f"cleanup: {type(exc).__name__}: {exc}")
        if self.options.keep:
            say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def months_after(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months in Seoul."""
    wall = add_months_clamped(moment.astimezone(SEOUL).replace(tzinfo=None), months)
    return wall.replace(tzinfo=SEOUL).astimezone(UTC)


def _count_refunded(session: Session) -> int:
    """Charges recorded as refunded at PortOne (its console) while our answer was lost."""
    query = select(func.count()).select_from(Charge).where(Charge.refunded_amount > 0)
    return int(session.scalar(query) or 0)


def _by_status(session: Session, column: InstrumentedAttribute[str]) -> Counter[str]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return Counter({str(status): int(count) for status, count in rows})


def main(argv: list[str] | None = None) -> int:
    """0: no anomaly; 1: anomalies; 2: the harness failed; 130: interrupted."""
    options = parse(argv)
    stop_on_termination()
    run = ChaosRun(options)
    try:
        return run.execute()
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except ClusterError as exc:
        say(f"harness error: {exc}")
        return 2
    except Exception as exc:  # the harness's own bug or an outage it could not ride out
        traceback.print_exc()
        say(f"harness error: {type(exc).__name__}: {exc}")
        return 2
    finally:
        ignore_termination()
        run.cleanup()
