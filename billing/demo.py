"""`billing demo`: a simulated year of billing through the real scheduler and worker code.

A fresh SQLite database in a temporary directory, the bundled sandbox with scripted
declines and injected faults, the in-process broker and worker, and the test clock moved
one day at a time. It ends with what was charged and a check of the money invariants.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select

from billing import invariants
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge, Subscription
from billing.embedded import Embedded
from billing.sandbox import SandboxConfig
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.status import outstanding
from billing.services.subscriptions import create_subscription

SEOUL = ZoneInfo("Asia/Seoul")
PLANS = {"basic-monthly": 6, "standard-monthly-trial": 3, "premium-yearly": 1, "team-calendar": 2}
FAULTS = {
    "error_500": 0.02,
    "commit_then_timeout": 0.02,
    "commit_then_reset": 0.01,
    "token_expired": 0.01,
}


@dataclass
class DemoConfig:
    customers: int = 300
    days: int = 365
    seed: int = 7
    concurrency: int = 8
    start: datetime = field(default_factory=lambda: datetime(2027, 1, 1, tzinfo=SEOUL))


@dataclass
class Cohorts:
    """Which sandbox customers behave how; the rest always pay."""

    always_decline: list[str] = field(default_factory=list)
    declines_twice: list[str] = field(default_factory=list)
    stolen_card: list[str] = field(default_factory=list)


def run_demo(config: DemoConfig, console: Console) -> int:
    directory = Path(tempfile.mkdtemp(prefix="billing-demo-"))
    settings = load_settings(
        {
            "BILLING_DATABASE_URL": f"sqlite:///{directory}/demo.db",
            "BILLING_SANDBOX": "1",
            "BILLING_PORTONE_TIMEOUT": "1",
            "BILLING_RECONCILE_AFTER": "2",
        }
    )
    sandbox = SandboxConfig(port=0, hang_seconds=2.5, seed=config.seed, auto_register=True)
    embedded = Embedded(settings, concurrency=config.concurrency, sandbox_config=sandbox)
    embedded.start(scheduler_interval=None)
    try:
        return _simulate(embedded, config, console, directory)
    finally:
        embedded.stop()


def _simulate(embedded: Embedded, config: DemoConfig, console: Console, directory: Path) -> int:
    app, server = embedded.app, embedded.sandbox
    assert server is not None and isinstance(app.clocks.billing, DatabaseClock)
    rng = random.Random(config.seed)
    app.clocks.billing.set(config.start)
    console.print(
        f"[bold]billing demo[/]: {config.customers} customers, {config.days} days from "
        f"{config.start.date()}, database {directory}/demo.db, sandbox {server.url}"
    )
    cohorts = _subscribe(embedded, config, rng)
    _script(embedded, cohorts)
    server.set_faults(FAULTS, seed=config.seed)
    started = time.monotonic()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("billing", total=config.days)
        for day in range(config.days + 1):
            app.clocks.billing.set(config.start + timedelta(days=day))
            embedded.scheduler.run_pass()
            _settle(embedded, in_flight_only=True)
            progress.update(task, completed=day)
    server.set_faults({}, seed=None)
    _settle(embedded, in_flight_only=False)
    elapsed = time.monotonic() - started
    return _report(embedded, config, cohorts, console, elapsed)


def _subscribe(embedded: Embedded, config: DemoConfig, rng: random.Random) -> Cohorts:
    cohorts = Cohorts()
    plans = [plan for plan, weight in PLANS.items() for _ in range(weight)]
    with embedded.app.transaction() as session:
        plan_store.ensure_catalog(session, embedded.settings, config.start)
        for n in range(config.customers):
            uid = f"demo-{n:04d}"
            # Half start on a random day, half on the 29th to 31st: month-end clamping.
            day = rng.choice([28, 29, 30]) if n % 2 else rng.randrange(0, 28)
            start = config.start + timedelta(days=day, hours=rng.randrange(0, 24))
            add_customer(session, uid, config.start, email=f"{uid}@example.com")
            create_subscription(session, uid, rng.choice(plans), start, config.start)
            _assign(cohorts, uid, rng.random())
    return cohorts


def _assign(cohorts: Cohorts, uid: str, draw: float) -> None:
    if draw < 0.05:
        cohorts.always_decline.append(uid)
    elif draw < 0.15:
        cohorts.declines_twice.append(uid)
    elif draw < 0.17:
        cohorts.stolen_card.append(uid)


def _script(embedded: Embedded, cohorts: Cohorts) -> None:
    server = embedded.sandbox
    assert server is not None
    for uid in cohorts.always_decline:
        server.set_default(customer_uid=uid, behavior="decline:잔액부족")
    for uid in cohorts.declines_twice:
        server.script(customer_uid=uid, behaviors=["decline:한도초과", "decline:한도초과"])
    for uid in cohorts.stolen_card:
        server.set_default(customer_uid=uid, behavior="decline:분실신고 카드")


def _settle(embedded: Embedded, *, in_flight_only: bool, timeout: float = 120.0) -> None:
    """Wait for the worker: sends in flight (each simulated day), or everything (the end)."""
    app = embedded.app
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = app.clocks.billing.now()
        with app.transaction() as session:
            if in_flight_only:
                busy = session.scalar(
                    select(Charge.id).where(Charge.status.in_(["pending", "processing"])).limit(1)
                )
                if busy is None:
                    return
            elif outstanding(session, now).total == 0:
                return
        if not in_flight_only:
            embedded.scheduler.run_pass()  # sweeps: unknown outcomes, lost messages
        time.sleep(0.02)


def _report(
    embedded: Embedded, config: DemoConfig, cohorts: Cohorts, console: Console, elapsed: float
) -> int:
    server = embedded.sandbox
    assert server is not None
    now = embedded.app.clocks.billing.now()
    with embedded.app.transaction() as session:
        charges = list(session.scalars(select(Charge)))
        subscriptions = list(session.scalars(select(Subscription)))
        anomalies = invariants.check(session, server.ledger(), now)
    console.print(_monthly_table(charges))
    statuses = Counter(s.status for s in subscriptions)
    console.print("subscriptions: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    console.print(
        f"cohorts: {len(cohorts.always_decline)} always decline, "
        f"{len(cohorts.declines_twice)} decline twice then pay, "
        f"{len(cohorts.stolen_card)} stolen cards"
    )
    faults = server.stats().get("faults", {})
    console.print(
        "faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none")
    )
    console.print(_invariants_table(anomalies))
    console.print(f"{len(charges)} charges in {elapsed:.1f} s")
    for anomaly in anomalies[:20]:
        console.print(f"[red]{anomaly.kind}[/]: {anomaly.detail}")
    return 1 if anomalies else 0


def _monthly_table(charges: list[Charge]) -> Table:
    months: dict[str, Counter[str]] = defaultdict(Counter)
    collected: Counter[str] = Counter()
    for charge in charges:
        month = charge.created_at.astimezone(SEOUL).strftime("%Y-%m")
        months[month][charge.status] += 1
        if charge.status == "paid":
            collected[month] += charge.amount
    table = Table("MONTH", "CHARGES", "PAID", "FAILED", "KRW COLLECTED", title="What was charged")
    for month in sorted(months):
        counts = months[month]
        table.add_row(
            month,
            str(sum(counts.values())),
            str(counts["paid"]),
            str(counts["failed"]),
            f"{collected[month]:,}",
        )
    paid = sum(c["paid"] for c in months.values())
    failed = sum(c["failed"] for c in months.values())
    table.add_row(
        "total", str(len(charges)), str(paid), str(failed), f"{sum(collected.values()):,}"
    )
    return table


def _invariants_table(anomalies: list[invariants.Anomaly]) -> Table:
    table = Table(
        "MONEY INVARIANT (SPEC 2)", "VIOLATIONS", title="Checked against the sandbox ledger"
    )
    for kind, count in invariants.summary(anomalies).items():
        table.add_row(kind.replace("_", " "), "[green]0[/]" if count == 0 else f"[red]{count}[/]")
    return table
