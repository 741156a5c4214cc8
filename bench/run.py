"""The benchmark: the product's throughput beside Celery's own ceiling, and its idle cost.

It starts its own PostgreSQL cluster and Redis server (chaos.cluster) and the bundled sandbox,
imports subscriptions that are all due at the same moment with `billing subscriptions import`,
then runs the real `billing scheduler` and K `celery -A workers worker` processes against the
sandbox, sampling the database to time the first claim, the last claim and the last recorded
outcome. In the same run, on the same broker, one Celery worker process runs empty tasks.
The ledger step (bench/ledger.py) times `billing reconcile ledger` over N payments.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from sqlalchemy import create_engine

from bench import api, cpu, ledger, ops
from bench.capacity import sandbox_calls_per_s
from bench.measure import Progress, machine, median_ms, rss_mib, wait_until
from bench.options import Options, parse
from bench.scratch import Outcome, run_in_scratch
from billing.broker import CALLS_PER_THREAD, CHARGE_BATCH
from chaos.cluster import Postgres, Redis
from chaos.processes import Managed, product_env, sandbox_url

ROOT = Path(__file__).resolve().parent.parent
DUE = "2027-01-01T09:00:00+09:00"
LATER = "2028-06-01T09:00:00+09:00"  # for the idle tables: nothing due


def sandbox_command(latency_ms: int) -> list[str]:
    """``billing sandbox`` on a free port; it issues a key to every bench customer on first use
    (the bench imports customer_uids that were never registered)."""
    options = ["--port", "0", "--latency-ms", str(latency_ms), "--auto-register"]
    return [sys.executable, "-m", "billing", "sandbox", *options]


@dataclass
class Throughput:
    label: str
    charges: int
    latency_ms: int
    concurrency: int
    import_rows_per_s: float = 0.0
    claims_per_s: float = 0.0
    charges_per_s: float = 0.0
    failed: int = 0
    elapsed_s: float = 0.0
    cpu: cpu.Usage | None = None  # from the first claim seen to the last outcome


@dataclass
class Ceiling:
    """Empty tasks through one ``-P solo`` worker: ``plain`` Celery or the product's settings."""

    label: str
    tasks: int
    tasks_per_s: float
    cpu: cpu.Usage


@dataclass
class Idle:
    subscriptions: int
    import_rows_per_s: float
    idle_pass_ms: float
    scheduler_rss_mib: float
    worker_rss_mib: float


@dataclass
class Capacity:
    latency_ms: int
    connections: int
    calls_per_s: float
    paid: int
    calls: int


@dataclass
class Results:
    options: Options
    machine: str
    capacity: list[Capacity] = field(default_factory=list)
    runs: list[Throughput] = field(default_factory=list)
    claims_per_s: float = 0.0
    ceilings: list[Ceiling] = field(default_factory=list)
    idle: list[Idle] = field(default_factory=list)
    api: list[api.ApiRate] = field(default_factory=list)
    pages: list[ops.PageTimes] = field(default_factory=list)
    rates: list[Throughput] = field(default_factory=list)  # BILLING_PORTONE_MAX_RPS runs
    ledger: ledger.LedgerResult | None = None


class Bench:
    def __init__(self, options: Options, root: Path) -> None:
        self.options = options
        self.root = root
        root.chmod(0o755)  # the postgres OS user must reach its data directory
        (root / "pg").mkdir()
        (root / "redis").mkdir()
        self.postgres = Postgres(root / "pg")
        self.redis = Redis(root / "redis")
        self.processes: list[Managed] = []
        self.pages: list[ops.PageTimes] = []  # the console's, on the idle step's databases

    def start(self) -> None:
        self.postgres.init()
        self.postgres.start()
        self.redis.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.redis.stop()
        self.postgres.stop()

    # -- helpers ------------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Managed:
        process = Managed(name, command, product_env(env), self.root / f"{name}.log").start()
        self.processes.append(process)
        return process

    def billing(self, env: dict[str, str], *args: str) -> str:
        command = [sys.executable, "-m", "billing", *args]
        done = subprocess.run(
            command, cwd=ROOT, env=product_env(env), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"billing {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def environment(self, database: str, latency_ms: int) -> tuple[dict[str, str], Managed]:
        url = self.postgres.create_database(database)
        redis.Redis.from_url(self.redis.url).flushdb()
        sandbox = self.spawn(f"sandbox-{database}", sandbox_command(latency_ms), {})
        env = {
            "BILLING_DATABASE_URL": url,
            "BILLING_BROKER_URL": self.redis.url,
            "BILLING_SANDBOX": "1",
            "BILLING_PORTONE_URL": sandbox_url(sandbox),
            "BILLING_PORTONE_TIMEOUT": "30",
            "BILLING_RECONCILE_AFTER": "120",
        }
        self.billing(env, "db", "upgrade")
        self.billing(env, "clock", "set", DUE)
        return env, sandbox

    def import_rows(self, env: dict[str, str], count: int, start: str) -> float:
        path = self.root / f"import-{count}.csv"
        with path.open("w") as handle:
            handle.write("customer_uid,plan_id,start\n")
            for n in range(count):
                handle.write(f"bench-{n},basic-monthly,{start}\n")
        report = json.loads(self.billing(env, "subscriptions", "import", str(path), "--json"))
        path.unlink()
        return count / float(report["seconds"])

    def workers(self, env: dict[str, str], label: str, concurrency: int) -> list[Managed]:
        started = [
            self.spawn(
                f"worker-{label}-{n}",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers",
                    "worker",
                    "-c",
                    str(concurrency),
                    "-n",
                    f"bench{n}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "INFO",
                ],
                env,
            )
            for n in range(self.options.workers)
        ]
        for worker in started:
            worker.wait_for(b" ready.", 120)
        return started

    def cpu_reading(self, named: dict[str, Managed], sampler: int = 0) -> dict[str, float]:
        """CPU seconds so far of ``named`` processes, PostgreSQL and Redis; the seconds of
        the bench's own sampling backend (``sampler``) are taken out of PostgreSQL's."""
        pids = {name: m.process.pid for name, m in named.items() if m.process is not None}
        assert self.postgres.process is not None and self.redis.process is not None
        pids |= {"PostgreSQL": self.postgres.process.pid, "Redis": self.redis.process.pid}
        seconds = cpu.reading({**pids, "sampling": sampler} if sampler else pids)
        seconds["PostgreSQL"] -= seconds.pop("sampling", 0.0)
        return seconds

    # -- the measurements ---------------------------------------------------------------------

    def sandbox_capacity(self, latency_ms: int, processes: int, threads: int) -> Capacity:
        """The sandbox alone, before anything of the product runs against it."""
        sandbox = self.spawn(f"sandbox-capacity-{latency_ms}", sandbox_command(latency_ms), {})
        # about ten seconds of calls at what the connections can carry
        ceiling = processes * threads * (1000 / latency_ms if latency_ms else 100)
        calls = int(min(20_000, ceiling * 10)) // processes * processes
        rate, paid = sandbox_calls_per_s(sandbox_url(sandbox), calls, processes, threads)
        sandbox.stop()
        return Capacity(latency_ms, processes * threads, rate, paid, calls)

    def claims(self, count: int) -> float:
        """The scheduler alone (no worker running): claims and publishes per second."""
        env, sandbox = self.environment("bench_claims", 0)
        self.import_rows(env, count, DUE)
        engine = create_engine(env["BILLING_DATABASE_URL"])
        progress = Progress(engine, count, claims_only=True)
        monitor = threading.Thread(target=progress.run, daemon=True)
        monitor.start()
        scheduler = self.spawn(
            "scheduler-claims",
            [sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"],
            env,
        )
        monitor.join(timeout=count / 100 + 120)
        progress.stop()
        engine.dispose()
        for process in (scheduler, sandbox):
            process.stop()
        first = progress.first(lambda s: s[1] > 0)
        claimed = progress.first(lambda s: s[1] >= count)
        if first is None or claimed is None:
            raise RuntimeError("claims: not all claimed in time")
        return count / max(claimed - first, progress.step)

    def throughput(
        self,
        label: str,
        count: int,
        latency_ms: int,
        concurrency: int,
        extra: dict[str, str] | None = None,
    ) -> Throughput:
        result = Throughput(label, count, latency_ms, concurrency)
        env, sandbox = self.environment(f"bench_{label.replace('-', '_')}", latency_ms)
        env.update(extra or {})
        result.import_rows_per_s = self.import_rows(env, count, DUE)
        workers = self.workers(env, label, concurrency)
        engine = create_engine(env["BILLING_DATABASE_URL"])
        named: dict[str, Managed] = {"sandbox": sandbox}
        named |= {f"worker {n + 1}": worker for n, worker in enumerate(workers)}
        before: dict[str, float] = {}
        progress = Progress(engine, count)
        progress.on_first_claim = lambda: before.update(
            self.cpu_reading(named, progress.backend_pid)
        )
        monitor = threading.Thread(target=progress.run, daemon=True)
        scheduler = self.spawn(
            f"scheduler-{label}",
            [sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"],
            env,
        )
        named["scheduler"] = scheduler
        monitor.start()
        monitor.join(timeout=count / 20 + 300)
        progress.stop()
        after = self.cpu_reading(named, progress.backend_pid)
        if before:
            result.cpu = cpu.Usage.between(before, after, count)
        first = progress.first(lambda s: s[1] > 0)
        settled = progress.first(lambda s: s[2] >= count)
        if first is None or settled is None:
            raise RuntimeError(f"{label}: not settled in time ({progress.samples[-1:]})")
        result.charges_per_s = count / max(settled - first, progress.step)
        result.elapsed_s = settled - first
        with engine.connect() as connection:
            from sqlalchemy import text

            result.failed = connection.execute(
                text("SELECT count(*) FROM charges WHERE status <> 'paid'")
            ).scalar_one()
        engine.dispose()
        for process in (scheduler, *workers, sandbox):
            process.stop()
        return result

    def celery_ceiling(self, label: str) -> Ceiling:
        """Empty tasks through one ``-P solo`` worker process, on the broker of the runs
        above: ``plain`` Celery, or ``product`` (the product's settings)."""
        from bench import empty

        env = {"BILLING_BROKER_URL": self.redis.url}
        client = redis.Redis.from_url(self.redis.url)
        client.flushdb()
        target = "bench.empty:plain" if label == "plain" else "bench.empty"
        flags = f"-P solo -Q {empty.QUEUE} --without-mingle --without-gossip --loglevel INFO"
        command = [sys.executable, "-m", "celery", "-A", target, "worker", *flags.split()]
        worker = self.spawn(f"worker-empty-{label}", command, env)
        worker.wait_for(b" ready.", 120)
        celery = empty.plain if label == "plain" else empty.app
        celery.conf.broker_url = self.redis.url
        tasks = self.options.empty_tasks
        named = {"worker": worker}
        before = self.cpu_reading(named) | {"publisher (the bench)": time.process_time()}
        started = time.monotonic()
        with celery.producer_or_acquire() as producer:
            for _ in range(tasks):
                celery.send_task("bench.empty", producer=producer)
            celery.send_task("bench.done", producer=producer)
        wait_until(lambda: client.get(empty.DONE_KEY) is not None, 600, step=0.01)
        elapsed = time.monotonic() - started
        after = self.cpu_reading(named) | {"publisher (the bench)": time.process_time()}
        worker.stop()
        for reading in (before, after):  # no database in an empty task
            reading.pop("PostgreSQL")
        return Ceiling(label, tasks, tasks / elapsed, cpu.Usage.between(before, after, tasks))

    def idle(self, size: int) -> Idle:
        env, sandbox = self.environment(f"bench_idle_{size}", 0)
        rate = self.import_rows(env, size, LATER)
        pass_ms = self._idle_pass_ms(env)
        scheduler = self.spawn(
            f"scheduler-idle-{size}",
            [sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"],
            env,
        )
        [worker] = self.workers({**env}, f"idle-{size}", self.options.concurrency_latency)[:1]
        time.sleep(15)  # many idle passes, and a worker waiting for work
        assert scheduler.process is not None and worker is not None and worker.process is not None
        result = Idle(
            size, rate, pass_ms, rss_mib(scheduler.process.pid), rss_mib(worker.process.pid)
        )
        for process in (
            scheduler,
            sandbox,
            *[p for p in self.processes if p.name.startswith(f"worker-idle-{size}")],
        ):
            process.stop()
        if "ops" not in self.options.skip:
            self.pages.append(ops.page_times(self, env, size))
        return result

    def _idle_pass_ms(self, env: dict[str, str]) -> float:
        from billing.app import build_app
        from billing.config import load_settings
        from billing.services.scheduling import Scheduler

        class Nowhere:
            def charge(self, ids: object, countdown: object = None) -> None: ...
            def reconcile(self, ids: object, countdown: object = None) -> None: ...
            def refund(self, ids: object, countdown: object = None) -> None: ...
            def notify(self, ids: object) -> None: ...
            def reconcile_ledger(self) -> None: ...

        app = build_app(load_settings(env))
        scheduler = Scheduler(app, Nowhere())
        scheduler.run_pass()  # warm: plans cached, connections open
        result = median_ms(scheduler.run_pass, 50)
        app.close()
        return result


def render(results: Results) -> str:
    o = results.options
    product = (
        f"Product: {o.workers} x `celery -A workers worker -c C` (threads pool, "
        f"{CHARGE_BATCH} charges per message, {CALLS_PER_THREAD} PortOne calls in flight per "
        "thread), 1 `billing scheduler`, the bundled sandbox in its own process."
    )
    lines = [f"Machine: {results.machine}", product, ""]
    lines += _capacity(results.capacity)
    if results.claims_per_s:
        lines += [
            f"Scheduler alone (no worker running), {o.charges:,} due at once: "
            f"{results.claims_per_s:,.0f} claims+publishes/s (target >= 3,000).",
            "",
        ]
    lines += _runs(results.runs)
    lines += _ceiling(results)
    lines += _cpu(results)
    lines += _rates(results.rates, results.options.rate_rps)
    lines += _idle(results.idle)
    if results.pages:
        lines += ops.render(results.pages)
    if results.api:
        lines += api.render(results.api)
    lines += ledger.render(results.ledger)
    return "\n".join(lines)


def _capacity(capacity: list[Capacity]) -> list[str]:
    if not capacity:
        return []
    lines = [
        "The sandbox alone (2 client processes of httpx threads, nothing else running):",
        "",
        "| gateway latency | connections | calls | answered paid | sandbox calls/s |",
        "|---|---|---|---|---|",
    ]
    for row in capacity:
        lines.append(
            f"| {row.latency_ms} ms | {row.connections} | {row.calls:,} | {row.paid:,} "
            f"| {row.calls_per_s:,.0f} |"
        )
    return [*lines, ""]


def _runs(runs: list[Throughput]) -> list[str]:
    if not runs:
        return []
    lines = [
        "| run | N due at once | gateway latency | C | import rows/s | end-to-end charges/s "
        "| not paid | first claim to last outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.label} | {run.charges:,} | {run.latency_ms} ms | {run.concurrency} "
            f"| {run.import_rows_per_s:,.0f} | {run.charges_per_s:,.0f} | {run.failed} "
            f"| {run.elapsed_s:,.1f} s |"
        )
    return lines


CEILING_NAMES = {
    "plain": "plain Celery (`-P solo`, acks_late, prefetch 1, no task events)",
    "product": "the product's Celery settings (`-P solo`, task events on, time limits, ...)",
}


def _ceiling(results: Results) -> list[str]:
    if not results.ceilings:
        return []
    lines = [
        "",
        f"Celery's own ceiling, same broker, one worker process, "
        f"{results.options.empty_tasks:,} empty tasks:",
    ]
    zero = next((run for run in results.runs if run.latency_ms == 0), None)
    for ceiling in results.ceilings:
        line = f"  {CEILING_NAMES[ceiling.label]}: {ceiling.tasks_per_s:,.0f} tasks/s"
        if zero is not None:
            ratio = zero.charges_per_s / ceiling.tasks_per_s
            line += f"; end-to-end charges/s at 0 ms over it: {ratio:.2f} (target >= 0.5)"
        lines.append(line)
    return lines


def _cpu(results: Results) -> list[str]:
    """CPU seconds per 1,000 charges of each process, beside Celery's per 1,000 empty tasks."""
    measured = [run for run in results.runs if run.cpu is not None]
    if not measured and not results.ceilings:
        return []
    lines = [
        "",
        "CPU seconds per 1,000 (from /proc, first claim to last outcome; the bench's "
        "own sampling taken out of PostgreSQL's):",
        "",
    ]
    for run in measured:
        assert run.cpu is not None
        parts = [f"{name} {run.cpu.per_thousand(name):.2f}" for name in sorted(run.cpu.seconds)]
        product = sum(run.cpu.per_thousand(name) for name in run.cpu.seconds if name != "sandbox")
        lines.append(
            f"  charges, {run.label} ({run.latency_ms} ms): {', '.join(parts)}; "
            f"everything but the sandbox {product:.2f}"
        )
    for ceiling in results.ceilings:
        usage = ceiling.cpu
        parts = [f"{name} {usage.per_thousand(name):.2f}" for name in sorted(usage.seconds)]
        lines.append(
            f"  empty tasks, {ceiling.label} Celery: {', '.join(parts)}; "
            f"all {usage.total_per_thousand:.2f}"
        )
    return lines


def _idle(idle: list[Idle]) -> list[str]:
    if not idle:
        return []
    lines = [
        "",
        "| subscriptions in the table | import rows/s | scheduler idle pass (median of 50) "
        "| scheduler RSS | one worker RSS |",
        "|---|---|---|---|---|",
    ]
    for row in idle:
        lines.append(
            f"| {row.subscriptions:,} | {row.import_rows_per_s:,.0f} | {row.idle_pass_ms:.2f} ms "
            f"| {row.scheduler_rss_mib:.0f} MiB | {row.worker_rss_mib:.0f} MiB |"
        )
    return lines


def rate_runs(bench: Bench, options: Options) -> list[Throughput]:
    """The same charges without a ceiling, under one far above what they reach (its cost),
    and under ``rate_rps`` (it holds across the worker processes)."""
    runs = []
    ceilings = [("rate-none", None), ("rate-high", 100_000.0), ("rate-held", options.rate_rps)]
    for label, rps in ceilings:
        extra = {"BILLING_PORTONE_MAX_RPS": f"{rps:g}"} if rps else {}
        count, concurrency = options.rate_charges, options.concurrency_zero
        runs.append(bench.throughput(label, count, 0, concurrency, extra))
    return runs


def _rates(runs: list[Throughput], rps: float) -> list[str]:
    if len(runs) != 3:
        return []
    free, high, held = runs
    cost = 100 * (1 - high.charges_per_s / free.charges_per_s)
    return [
        "",
        f"BILLING_PORTONE_MAX_RPS, {free.charges:,} charges due at once, 0 ms, "
        f"{free.concurrency} threads x the worker processes:",
        f"  no ceiling {free.charges_per_s:,.0f} charges/s; a ceiling of 100,000/s (not the "
        f"limit) {high.charges_per_s:,.0f}/s (cost {cost:+.1f}%); a ceiling of {rps:g}/s "
        f"{held.charges_per_s:,.1f}/s ({100 * held.charges_per_s / rps:.1f}% of it; one "
        "again call per charge)",
    ]


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    return run_in_scratch(
        "billing-bench-", lambda root: Bench(options, root), lambda bench: measure(bench, options)
    )


def measure(bench: Bench, options: Options) -> Outcome:
    """Every step not in ``--skip``, in order; the report of them all."""
    results = Results(options, machine())
    try:
        bench.start()
        if "sandbox" not in options.skip:
            in_flight = options.workers * options.concurrency_latency * CALLS_PER_THREAD
            results.capacity = [
                bench.sandbox_capacity(0, 2, 32),
                bench.sandbox_capacity(options.latency_ms, 2, in_flight // 2),
            ]
        if "claims" not in options.skip:
            results.claims_per_s = bench.claims(options.charges)
        if "zero" not in options.skip:
            results.runs.append(
                bench.throughput("zero", options.charges, 0, options.concurrency_zero)
            )
            results.ceilings = [bench.celery_ceiling("plain"), bench.celery_ceiling("product")]
        if "latency" not in options.skip:
            results.runs.append(
                bench.throughput(
                    "latency", options.slice, options.latency_ms, options.concurrency_latency
                )
            )
        if "rate" not in options.skip:
            results.rates = rate_runs(bench, options)
        if "idle" not in options.skip:
            results.idle = [bench.idle(size) for size in options.idle_sizes]
            results.pages = bench.pages
        if "api" not in options.skip:
            results.api = api.api_rates(bench, options.api_requests, options.api_clients)
        if "ledger" not in options.skip:
            results.ledger = ledger.ledger_step(bench, options.ledger_payments)
    except ledger.LedgerDisagrees as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return Outcome(1)
    return Outcome(0, render(results))
