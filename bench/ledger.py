"""The ledger step: `billing reconcile ledger` over a window of N payments at the sandbox.

The sandbox runs in its own process (``python -m bench.ledger SANDBOX-ARGS``, below), which
writes N payments into its ledger through the sandbox's Python API, spread over 28 days,
and writes their imp_uids to a file. The benchmark then fills a scratch database of its
PostgreSQL cluster with the matching customers, subscriptions and charges by ``COPY``, and
runs the real ``billing reconcile ledger --json`` twice as a child process, measuring its
wall time, CPU and peak RSS (``wait4``) and the sandbox's CPU and peak RSS (``/proc``):

- the first run finds the differences the population holds and repairs them: payments
  PortOne holds paid that this database forgot (0.1%), refunds made in PortOne's console
  (full and partial), amounts that differ (reported), payments that are not ours (counted
  and left alone) and net-cancelled attempts (no money moved: nothing to do);
- the second run is the daily run after that: both ledgers agree but for the amounts a
  person must look at.

Anything else than exactly those findings, in the report or in the database, aborts the
benchmark with a line that says what differed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg import sql

from billing.domain import lifecycle
from billing.domain.plans import Plan
from billing.domain.state import BillingState
from billing.domain.statuses import SubscriptionStatus
from billing.services.rows import state_values

if TYPE_CHECKING:
    from bench.run import Bench

SEED = 20261203
PLAN_ID = "basic-monthly"
PARTIAL = 3_000  # KRW refunded of a partially refunded payment
OTHER_AMOUNT = 9_000  # what PortOne holds for a payment whose amount differs from ours
SPREAD = 28 * 86_400  # the payments' start times are spread over this many seconds
DAY = 86_400
CONSOLE_REASON = "고객 요청 (콘솔 환불)"
DATABASE = "bench_ledger"


class LedgerDisagrees(RuntimeError):
    """The reconciliation did not find (or repair) exactly the differences it was given."""


class Kind(StrEnum):
    AGREE = "agree"  # paid there and here
    MISSING = "missing"  # paid there; this database forgot the charge
    REFUNDED = "refunded"  # paid here; refunded in full in PortOne's console
    PARTIAL = "partial"  # paid here; refunded in part in PortOne's console
    AMOUNT = "amount"  # paid here for another amount than PortOne holds
    NET_CANCEL = "net_cancel"  # cancelled by the PG before it was paid; failed here
    NOT_OURS = "not_ours"  # another system's merchant_uid on the same PortOne account


@dataclass(frozen=True, slots=True)
class Spec:
    """One payment PortOne holds and what this database holds for it."""

    n: int
    kind: Kind
    started_at: int  # unix seconds

    @property
    def key(self) -> str:
        return f"lb{self.n:010d}"  # [a-z0-9]{12}, like a subscription key

    @property
    def merchant_uid(self) -> str:
        if self.kind is Kind.NOT_OURS:
            return f"order-{self.n:08d}"
        return f"sub-{self.key}-1-1"

    @property
    def customer_uid(self) -> str:
        return f"ledger-{self.n}"

    @property
    def portone_amount(self) -> int:
        return OTHER_AMOUNT if self.kind is Kind.AMOUNT else 9_900

    @property
    def refund(self) -> int | None:
        """What PortOne's console refunded (None: nothing; the full amount or PARTIAL)."""
        if self.kind is Kind.REFUNDED:
            return self.portone_amount
        return PARTIAL if self.kind is Kind.PARTIAL else None


def shares(count: int) -> dict[Kind, int]:
    """How many payments of each kind of difference a population of ``count`` holds."""
    return {
        Kind.MISSING: max(1, count // 1_000),
        Kind.REFUNDED: max(1, count // 5_000),
        Kind.PARTIAL: max(1, count // 10_000),
        Kind.AMOUNT: max(1, count // 10_000),
        Kind.NET_CANCEL: max(1, count // 10_000),
        Kind.NOT_OURS: max(1, count // 2_000),
    }


def population(count: int, first: int) -> list[Spec]:
    """``count`` payments started from ``first`` on, the differences at seeded places."""
    wanted = shares(count)
    if sum(wanted.values()) >= count:
        raise ValueError(f"--ledger-payments: at least {sum(wanted.values()) + 1} payments")
    places = random.Random(SEED).sample(range(count), sum(wanted.values()))
    kinds = dict.fromkeys(range(count), Kind.AGREE)
    kinds.update(zip(places, (kind for kind, n in wanted.items() for _ in range(n)), strict=True))
    return [Spec(n, kinds[n], first + n * SPREAD // count) for n in range(count)]


# -- the sandbox's process ----------------------------------------------------------------------


def serve_sandbox(argv: list[str]) -> int:
    """``python -m bench.ledger COUNT FIRST IMP_UIDS``: load the ledger, write its imp_uids
    (one a line, in population order), then serve until SIGTERM."""
    from billing.sandbox import SandboxConfig, SandboxServer

    count, first, out = int(argv[0]), int(argv[1]), Path(argv[2])
    # every option spelled out: the benchmark must not change with the sandbox's defaults
    config = SandboxConfig(port=0, seed=SEED, auto_register=True, latency_ms=0, token_ttl=1800)
    server = SandboxServer(config)
    imp_uids = list(load_ledger(server, population(count, first)))
    out.write_text("\n".join(imp_uids) + "\n")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopped.set())
    server.start()
    print(f"BILLING_PORTONE_URL={server.url} loaded {count} payments", flush=True)
    stopped.wait()
    server.stop()
    return 0


def load_ledger(server: Any, specs: Iterable[Spec]) -> Iterator[str]:
    """Record ``specs`` in the sandbox's ledger (refunds too); yields their imp_uids."""
    from billing.sandbox.cards import TEST_CARD
    from billing.sandbox.ledger import CancelTerms, ChargeOrder, PaymentStatus

    ledger = server.state.ledger
    for spec in specs:
        order = ChargeOrder(spec.customer_uid, spec.merchant_uid, spec.portone_amount, "월간")
        status = PaymentStatus.CANCELLED if spec.kind is Kind.NET_CANCEL else PaymentStatus.PAID
        payment = ledger.record(order, TEST_CARD, status, spec.started_at, None)
        if spec.refund is not None:
            terms = CancelTerms(spec.refund, None, CONSOLE_REASON)
            ledger.cancel(payment.imp_uid, None, terms, spec.started_at + 3_600)
        yield payment.imp_uid


# -- this database ------------------------------------------------------------------------------


def load_plan(env: dict[str, str]) -> Plan:
    """The plan every subscription of the population is on (the catalog loaded first)."""
    from billing.app import build_app
    from billing.config import load_settings
    from billing.services.plan_store import current_plan, ensure_catalog

    app = build_app(load_settings(env))
    try:
        with app.transaction() as session:
            ensure_catalog(session, app.settings, datetime.now(UTC))
            return current_plan(session, PLAN_ID)
    finally:
        app.close()


def fill(url: str, plan: Plan, specs: list[Spec], imp_uids: list[str]) -> None:
    """Customers, subscriptions and charges for our payments, by COPY, then the sequences
    moved past them and the planner's statistics refreshed. Ids are ``n + 1``."""
    ours = [spec for spec in specs if spec.kind is not Kind.NOT_OURS]
    now = datetime.now(UTC)
    charged = [(s, imp_uids[s.n]) for s in ours if s.kind is not Kind.MISSING]
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        _copy(cursor, "customers", (_customer(s) for s in ours))
        _copy(cursor, "subscriptions", (_subscription(s, plan, now) for s in ours))
        _copy(cursor, "charges", (_charge(s, imp_uid, plan, now) for s, imp_uid in charged))
        for table in ("customers", "subscriptions", "charges"):
            cursor.execute(SETVAL.format(table=sql.Identifier(table), name=sql.Literal(table)))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE customers, subscriptions, charges")


SETVAL = sql.SQL("SELECT setval(pg_get_serial_sequence({name}, 'id'), max(id)) FROM {table}")


def _copy(cursor: psycopg.Cursor[Any], table: str, rows: Iterator[dict[str, Any]]) -> None:
    """COPY ``rows`` (dicts with the same keys, the columns) into ``table``."""
    first = next(rows, None)
    if first is None:
        return
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in first)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
    with cursor.copy(statement) as copy:
        copy.write_row(tuple(first.values()))
        for row in rows:
            copy.write_row(tuple(row.values()))


def _at(spec: Spec) -> datetime:
    return datetime.fromtimestamp(spec.started_at, UTC)


def _customer(spec: Spec) -> dict[str, Any]:
    return {"id": spec.n + 1, "customer_uid": spec.customer_uid, "created_at": _at(spec)}


def _state(spec: Spec, plan: Plan) -> BillingState:
    """The subscription as the product holds it after its first charge (the missing one:
    as a restore from a backup taken before that charge left it)."""
    started = lifecycle.start(plan, _at(spec))
    if spec.kind is Kind.MISSING:
        return started
    if spec.kind is Kind.NET_CANCEL:  # the attempt failed: past due, a retry tomorrow
        return replace(
            started,
            status=SubscriptionStatus.PAST_DUE,
            current=started.due,
            attempt=2,
            next_charge_at=_at(spec) + timedelta(days=1),
            first_failed_at=_at(spec),
        )
    return lifecycle.record_payment(lifecycle.begin_period(started), plan, None)


def _subscription(spec: Spec, plan: Plan, now: datetime) -> dict[str, Any]:
    return {
        "id": spec.n + 1,
        "key": spec.key,
        "customer_id": spec.n + 1,
        "plan_version": plan.version,
        "started_at": _at(spec),
        "reminded_period_no": 0,
        "created_at": _at(spec),
        "updated_at": now,
        **state_values(_state(spec, plan)),
    }


def _charge(spec: Spec, imp_uid: str, plan: Plan, now: datetime) -> dict[str, Any]:
    period = lifecycle.start(plan, _at(spec)).due
    paid = spec.kind is not Kind.NET_CANCEL
    return {
        "id": spec.n + 1,
        "subscription_id": spec.n + 1,
        "period_no": 1,
        "attempt": 1,
        "merchant_uid": spec.merchant_uid,
        "customer_uid": spec.customer_uid,
        "plan_id": plan.id,
        "plan_version": plan.version,
        "name": plan.name,
        "amount": plan.amount,
        "period_start": period.start,
        "period_end": period.end,
        "status": "paid" if paid else "failed",
        "imp_uid": imp_uid if paid else None,
        "fail_reason": None if paid else "PG가 승인을 취소했습니다 (net cancel)",
        "sends": 1,
        "refunded_amount": 0,
        "paid_at": _at(spec) if paid else None,
        "created_at": _at(spec),
        "updated_at": now,
        "sent_at": _at(spec),
    }


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    wall_s: float
    cpu_s: float  # the reconciling process, user + system
    peak_rss_mib: float  # the reconciling process (wait4's ru_maxrss)
    pages: int  # GET /payments/status/{status} calls answered by the sandbox
    sandbox_cpu_s: float
    sandbox_peak_mib: float  # the sandbox's high-water mark during this run
    read: int
    findings: Counter[str]

    @property
    def per_s(self) -> float:
        return self.read / self.wall_s


@dataclass
class LedgerResult:
    payments: int
    ours: int
    differences: dict[Kind, int]
    fill_s: float
    sandbox_loaded_mib: float  # the sandbox holding the ledger, before any run
    runs: list[Run]


def reconcile(env: dict[str, str], since: datetime, until: datetime) -> tuple[dict[str, Any], Run]:
    """One ``billing reconcile ledger --json`` child: its report, wall time, CPU and peak RSS."""
    command = [
        *(sys.executable, "-m", "billing", "reconcile", "ledger", "--json"),
        *("--since", since.isoformat(), "--until", until.isoformat()),
    ]
    out, message, code, usage, wall = child_process(command, env)
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        raise LedgerDisagrees(
            f"billing reconcile ledger exited {code} without a report: {message}"
        ) from None
    found = Counter(str(finding["verdict"]) for finding in report["findings"])
    cpu = usage.ru_utime + usage.ru_stime
    run = Run("", wall, cpu, usage.ru_maxrss / 1024, 0, 0.0, 0.0, int(report["read"]), found)
    return report, run


def child_process(
    command: list[str], env: dict[str, str]
) -> tuple[bytes, str, int, resource.struct_rusage, float]:
    """Run ``command`` to its end: stdout, the end of stderr, exit code, the child's own
    resource usage (``wait4``: its ``ru_maxrss``, not that of every child so far), wall time."""
    from chaos.processes import ROOT, product_env

    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        child = subprocess.Popen(
            command, cwd=ROOT, env=product_env(env), stdout=subprocess.PIPE, stderr=errors
        )
        assert child.stdout is not None
        with child.stdout:
            out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()[-500:]
    return out, message, child.returncode, usage, wall


def proc_status(pid: int, name: str) -> float:
    """A ``/proc/PID/status`` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    """Start a new high-water mark of the process's RSS (Linux: ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):  # then VmHWM is the peak since the process started
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_pages(url: str) -> int:
    """``GET /payments/status/{status}`` calls the sandbox has answered so far."""
    requests = httpx.get(f"{url}/__sandbox__/stats", timeout=30).json()["requests"]
    return sum(n for name, n in requests.items() if "/payments/status/" in name)


def measured(
    label: str, env: dict[str, str], window: tuple[datetime, datetime], sandbox: tuple[str, int]
) -> tuple[dict[str, Any], Run]:
    """One reconciliation, with what it cost the sandbox beside it."""
    url, pid = sandbox
    pages, cpu = status_pages(url), cpu_seconds(pid)
    reset_peak(pid)
    report, run = reconcile(env, *window)
    run.label = label
    run.pages = status_pages(url) - pages
    run.sandbox_cpu_s = cpu_seconds(pid) - cpu
    run.sandbox_peak_mib = proc_status(pid, "VmHWM")
    return report, run


# -- what must be found -------------------------------------------------------------------------


def expected(specs: list[Spec], first: bool) -> dict[str, set[str]]:
    """verdict -> merchant_uids: the first run repairs, a second finds only what was
    reported (an amount that differs is a person's to settle)."""
    from billing.services.ledger import Verdict

    verdicts = {Kind.AMOUNT: Verdict.REPORTED}
    if first:
        verdicts |= {
            Kind.MISSING: Verdict.CREATED,
            Kind.REFUNDED: Verdict.RECORDED_REFUND,
            Kind.PARTIAL: Verdict.RECORDED_REFUND,
        }
    wanted: dict[str, set[str]] = {}
    for spec in specs:
        if spec.kind in verdicts:
            wanted.setdefault(str(verdicts[spec.kind]), set()).add(spec.merchant_uid)
    return wanted


def check(
    report: dict[str, Any], wanted: dict[str, set[str]], specs: list[Spec], label: str
) -> None:
    """Exactly the findings ``wanted`` (verdict -> merchant_uids), or LedgerDisagrees."""
    ours = sum(1 for spec in specs if spec.kind is not Kind.NOT_OURS)
    if (report["read"], report["ours"]) != (len(specs), ours):
        raise LedgerDisagrees(
            f"ledger, {label}: read {report['read']} payments, {report['ours']} ours; "
            f"PortOne holds {len(specs)}, {ours} ours"
        )
    found: dict[str, set[str]] = {}
    for finding in report["findings"]:
        found.setdefault(str(finding["verdict"]), set()).add(finding["merchant_uid"])
    for verdict in sorted(set(found) | set(wanted)):
        extra = found.get(verdict, set()) - wanted.get(verdict, set())
        lacking = wanted.get(verdict, set()) - found.get(verdict, set())
        if extra or lacking:
            raise LedgerDisagrees(
                f"ledger, {label}: {verdict!r}: {len(lacking)} expected and not found "
                f"(e.g. {sorted(lacking)[:3]}), {len(extra)} found and not expected "
                f"(e.g. {sorted(extra)[:3]})"
            )
    if report["agree"]:
        raise LedgerDisagrees(f"ledger, {label}: agree, yet amounts that differ were reported")


def check_database(url: str, specs: list[Spec]) -> None:
    """After the repairs: every payment PortOne holds paid is a paid charge here, and the
    console's refunds are recorded, each with its event."""
    kinds = Counter(spec.kind for spec in specs)
    paid = sum(kinds[k] for k in (Kind.AGREE, Kind.MISSING, Kind.REFUNDED, Kind.PARTIAL))
    paid += kinds[Kind.AMOUNT]
    refunded = kinds[Kind.REFUNDED] * 9_900 + kinds[Kind.PARTIAL] * PARTIAL
    wanted = (paid, refunded, kinds[Kind.REFUNDED] + kinds[Kind.PARTIAL], kinds[Kind.MISSING])
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM charges WHERE status = 'paid'),"
            " (SELECT coalesce(sum(refunded_amount), 0) FROM charges),"
            " (SELECT count(*) FROM events WHERE kind = 'charge_refunded'),"
            " (SELECT count(*) FROM events WHERE kind = 'charge_created')"
        ).fetchone()
    if row is None or tuple(int(n) for n in row) != wanted:
        raise LedgerDisagrees(
            "ledger: the database after the repairs holds (paid charges, refunded KRW, "
            f"charge_refunded events, charges created) = {row}, expected {wanted}"
        )


# -- the step -----------------------------------------------------------------------------------


def ledger_step(bench: Bench, count: int) -> LedgerResult:
    from chaos.processes import sandbox_url

    first = int(time.time()) - SPREAD - DAY
    specs = population(count, first)
    out = bench.root / "ledger-imp-uids.txt"
    command = [sys.executable, "-m", "bench.ledger", str(count), str(first), str(out)]
    sandbox = bench.spawn("sandbox-ledger", command, {})
    try:
        url = sandbox_url(sandbox, timeout=count / 1_000 + 120)
        assert sandbox.process is not None
        pid = sandbox.process.pid
        loaded = proc_status(pid, "VmRSS")
        imp_uids = out.read_text().split()
        result = LedgerResult(count, 0, shares(count), 0.0, loaded, [])
        with scratch_database(bench) as database_url:
            env = {
                "BILLING_DATABASE_URL": database_url,
                "BILLING_BROKER_URL": bench.redis.url,
                "BILLING_SANDBOX": "1",
                "BILLING_PORTONE_URL": url,
                "BILLING_PORTONE_TIMEOUT": "60",
            }
            bench.billing(env, "db", "upgrade")
            started = time.monotonic()
            fill(database_url, load_plan(env), specs, imp_uids)
            result.fill_s = time.monotonic() - started
            window = (datetime.fromtimestamp(first - 3_600, UTC), datetime.now(UTC))
            for label, first_run in (("first", True), ("again", False)):
                report, run = measured(label, env, window, (url, pid))
                check(report, expected(specs, first_run), specs, f"{label} run")
                result.runs.append(run)
                result.ours = int(report["ours"])
                if first_run:
                    check_database(database_url, specs)
    finally:
        sandbox.stop()
    return result


@contextlib.contextmanager
def scratch_database(bench: Bench) -> Iterator[str]:
    """A database of the bench's cluster for this step, dropped after it."""
    url = bench.postgres.create_database(DATABASE)
    try:
        yield url
    finally:
        dsn = bench.postgres.url("postgres").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def render(result: LedgerResult | None) -> list[str]:
    if result is None:
        return []
    d = result.differences
    lines = [
        "",
        f"billing reconcile ledger, {result.payments:,} payments at the sandbox over 28 days "
        f"({result.ours:,} ours; differences: {d[Kind.MISSING]} paid there and missing here, "
        f"{d[Kind.REFUNDED]} refunded in full and {d[Kind.PARTIAL]} in part in PortOne's "
        f"console, {d[Kind.AMOUNT]} other amounts, {d[Kind.NET_CANCEL]} net-cancelled, "
        f"{d[Kind.NOT_OURS]} not ours); database filled by COPY in {result.fill_s:.1f} s, "
        f"the sandbox holding the ledger: {result.sandbox_loaded_mib:.0f} MiB RSS:",
        "",
        "| run | wall time | pages | payments/s | found | CPU | peak RSS | sandbox CPU "
        "| sandbox peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result.runs:
        found = ", ".join(f"{n} {verdict}" for verdict, n in sorted(run.findings.items()))
        lines.append(
            f"| {run.label} | {run.wall_s:.1f} s | {run.pages} | {run.per_s:,.0f} | {found} "
            f"| {run.cpu_s:.1f} s | {run.peak_rss_mib:.0f} MiB | {run.sandbox_cpu_s:.1f} s "
            f"| {run.sandbox_peak_mib:.0f} MiB |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(serve_sandbox(sys.argv[1:]))
