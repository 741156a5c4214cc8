"""Running the product: ``scheduler``, ``run``, ``drain`` and ``status``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from types import FrameType
from typing import TypeVar

import click

from billing import preflight
from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.params import whole
from billing.cli.runtime import Runtime
from billing.db.capacity import measure_engine
from billing.domain.times import format_time
from billing.errors import BillingError
from billing.logs import configure
from billing.outages import Stopped, patiently
from billing.services import plan_store
from billing.services.status import StatusReport, outstanding, status_report

T = TypeVar("T")


@click.command()
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between passes when nothing was due.",
)
@click.pass_obj
def scheduler(runtime: Runtime, once: bool, interval: float) -> None:
    """The scheduler daemon: claims due work and publishes it to the broker.

    Run as many as you like; they never claim the same row. Needs BILLING_BROKER_URL
    (the in-process broker only exists inside `billing run`) and a catalog that reads. A
    database or broker that cannot be reached is waited for (logged), never a reason to exit.
    """
    from billing import bootstrap
    from billing.broker import publisher_app

    settings = runtime.settings
    preflight.require(settings, preflight.Role.SCHEDULER)
    configure(level=runtime.settings.log_level, secrets=_secrets(runtime))
    stop = threading.Event()
    _stop_on_signals(stop)
    wait = _at_once if once else patiently  # a one-off pass reports an outage and exits
    try:
        app = wait(lambda: runtime.app, "database", stop)
        wait(lambda: _ensure_catalog(runtime), "database", stop)
    except Stopped:
        return
    daemon = bootstrap.scheduler(app, publisher_app(settings))
    if once:
        report = daemon.run_pass()
        click.echo(
            f"claimed {report.claimed}, canceled {report.canceled}, skipped {report.skipped}, "
            f"republished {report.republished}, reconciling {report.reconciling}"
        )
        return
    daemon.run_forever(interval, stop)


def _at_once(work: Callable[[], T], _what: str, _stop: threading.Event) -> T:
    return work()


def _ensure_catalog(runtime: Runtime) -> None:
    now = runtime.app.clocks.billing.now()
    with runtime.app.transaction() as session:
        plan_store.ensure_catalog(session, runtime.settings, now)


@click.command()
@click.option("--concurrency", "-c", type=whole(1, 256), default=8, show_default=True)
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True)
@click.pass_obj
def run(runtime: Runtime, concurrency: int, interval: float) -> None:
    """Scheduler and worker in one process (the embedded default).

    With nothing configured: SQLite file billing.db, the in-process broker and the bundled
    PortOne sandbox. Otherwise the configured database, broker and PortOne.
    """
    from billing.embedded import Embedded

    configure(level=runtime.settings.log_level, secrets=_secrets(runtime))
    settings = runtime.settings
    now = runtime.app.clocks.billing.now()
    with runtime.app.transaction() as session:
        plan_store.ensure_catalog(session, settings, now)
    embedded = Embedded(settings, concurrency=concurrency)
    embedded.start(scheduler_interval=interval)
    target = embedded.sandbox.url + " (bundled sandbox)" if embedded.sandbox else "PortOne"
    click.echo(
        f"billing run: scheduler and {concurrency} worker threads charging {target}; Ctrl-C stops"
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        embedded.stop()


@click.command()
@click.option("--timeout", type=click.FloatRange(0, 86400), default=300, show_default=True)
@click.pass_obj
def drain(runtime: Runtime, timeout: float) -> None:
    """Wait until nothing is due at the clock's now and no charge is open.

    Open means pending, processing or unknown. Schedulers and workers must be running.
    """
    app = runtime.app
    deadline = time.monotonic() + timeout
    while True:
        now = app.clocks.billing.now()
        with app.transaction() as session:
            left = outstanding(session, now)
        if left.total == 0:
            click.echo("drained: nothing due, no open charge")
            return
        if time.monotonic() >= deadline:
            raise BillingError(
                f"not drained after {timeout:g} s: {left.due} subscriptions due, "
                f"{left.open_charges} charges open"
            )
        time.sleep(0.2)


@click.command()
@json_option
@click.pass_obj
def status(runtime: Runtime, as_json: bool) -> None:
    """Counts by status, what is due, recent failures and the queue depth; the database's
    connections against max_connections; and what would stop a worker, the scheduler or the
    web process from starting with this environment (`configuration: ...`). With
    BILLING_CONSOLE_URL, a link to the console's queue of each count that needs a person."""
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        report = status_report(session, now)
    report.queue_depth = _queue_depth(runtime)
    problems = preflight.every_problem(runtime.settings)
    capacity = measure_engine(app.engine)
    if capacity is not None and capacity.warning is not None:
        problems.append(f"database: {capacity.warning}")
    console = console_links(report, runtime.settings.console_url)
    if as_json:
        document = asdict(report)
        document["console"] = console
        document["connections"] = None if capacity is None else asdict(capacity)
        document["now"] = format_time(report.now, runtime.settings_zone)
        document["configuration"] = problems
        emit_json(document)
        return
    click.echo(f"now {format_time(report.now, runtime.settings_zone)}")
    rows: list[tuple[str, str, object]] = [
        ("subscriptions", k, v) for k, v in sorted(report.subscriptions.items())
    ]
    rows += [("charges", k, v) for k, v in sorted(report.charges.items())]
    rows += [
        ("due", "now (not yet claimed)", report.due_now),
        ("due", "in the next 24 h", report.due_next_24h),
        ("due", "oldest due, seconds", report.oldest_due_seconds),
        ("failures", "last 24 h", report.failed_last_24h),
        ("queue", "depth", "-" if report.queue_depth is None else report.queue_depth),
        ("needs a person", "set aside by the scheduler", report.set_aside),
        ("needs a person", "duplicate payments to refund", report.duplicate_payments),
        ("needs a person", "held by import portone-schedules", report.takeovers_held),
    ]
    if capacity is not None:
        rows += [
            ("database", "connections open", capacity.open_connections),
            ("database", "max_connections", capacity.max_connections),
            ("database", "billing pools could open", capacity.pools),
        ]
    emit_table(("WHAT", "STATUS", "COUNT"), rows, "")
    for subscription_id, reason in report.set_aside_reasons:
        click.echo(f"set aside: subscription {subscription_id}: {reason}")
    for queue, link in console.items():
        click.echo(f"console: {queue}: {link}")
    for problem in problems or ["ok"]:
        click.echo(f"configuration: {problem}")


def console_links(report: StatusReport, console_url: str | None) -> dict[str, str]:
    """The console's queue (``BILLING_CONSOLE_URL``/queues#...) of each count that needs a
    person and is not zero; nothing without the console's address."""
    if console_url is None:
        return {}
    counts = (
        ("past due", "past-due", report.subscriptions.get("past_due", 0)),
        ("unknown charges", "unknown", report.charges.get("unknown", 0)),
        ("set aside by the scheduler", "set-aside", report.set_aside),
        ("duplicate payments to refund", "duplicates", report.duplicate_payments),
    )
    return {what: f"{console_url}/queues#{anchor}" for what, anchor, count in counts if count}


def _queue_depth(runtime: Runtime) -> int | None:
    url = runtime.settings.broker_url
    if url is None or not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    from billing.broker import QUEUE

    try:
        return int(redis.Redis.from_url(url, socket_timeout=2).llen(QUEUE))
    except redis.RedisError:
        return None


def _secrets(runtime: Runtime) -> tuple[str, ...]:
    return runtime.settings.log_secrets


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
