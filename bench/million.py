"""``make bench-million`` (``python -m bench.million --help``): a million subscriptions due at
once, billed end to end against the sandbox at 300 ms, on this machine.

It starts its own PostgreSQL cluster and Redis (as ``make bench`` does), imports N
subscriptions all due at the same moment, runs the real scheduler and worker processes until
every charge has an outcome, and samples, every few seconds: the messages in the queue, the
charges waiting to be sent and the age of the oldest due charge (everything fell due when the
scheduler started, so it is the time since then while anything due is still unsent), and how
many charges the sweep re-published. At the end: the wall time, the peak memory of each
process, CPU seconds per 1,000 charges, and every money invariant checked against the
sandbox's own ledger (``billing.invariants``). Writes the samples to a CSV and draws them
into an SVG. Opt-in (about 40 minutes for a million here): not in CI, not in ``make test``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from sqlalchemy import Engine, create_engine, text

from bench import cpu
from bench import options as bench_options
from bench.plot import Panel, chart
from bench.run import DUE, Bench
from bench.scratch import Outcome, run_in_scratch
from billing import invariants
from billing.app import build_app
from billing.config import load_settings
from chaos.processes import Managed, sandbox_url

COLUMNS = (
    "seconds",
    "queued_messages",
    "unacked_messages",
    "unclaimed",
    "pending",
    "processing",
    "unknown",
    "settled",
    "oldest_due_age_s",
    "republished",
)


@dataclass(frozen=True)
class MillionOptions:
    subscriptions: int
    latency_ms: int
    workers: int
    concurrency: int
    reconcile_after: int
    sample_every: float
    csv: Path
    svg: Path


def parse(argv: list[str] | None = None) -> MillionOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.million", description=__doc__.split("\n\n")[0]
    )
    positive = bench_options._positive
    parser.add_argument(
        "--subscriptions",
        type=positive,
        default=1_000_000,
        help="subscriptions due at once (default 1000000)",
    )
    parser.add_argument(
        "--latency-ms",
        type=positive,
        default=300,
        help="the sandbox's latency per call (default 300)",
    )
    parser.add_argument("--workers", type=positive, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=positive, default=32, help="threads per worker process (default 32)"
    )
    parser.add_argument(
        "--reconcile-after",
        type=positive,
        default=300,
        help="BILLING_RECONCILE_AFTER in seconds (default 300, the product's)",
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="seconds between samples (default 5)"
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path("bench-million.csv"),
        help="where the samples go (default bench-million.csv)",
    )
    parser.add_argument(
        "--svg",
        type=Path,
        default=Path("bench-million.svg"),
        help="where the plot goes (default bench-million.svg)",
    )
    args = parser.parse_args(argv)
    if not args.sample_every > 0:
        parser.error(f"--sample-every: must be greater than 0, got {args.sample_every}")
    return MillionOptions(
        args.subscriptions,
        args.latency_ms,
        args.workers,
        args.concurrency,
        args.reconcile_after,
        args.sample_every,
        args.csv,
        args.svg,
    )


@dataclass
class Sampler:
    """One row of COLUMNS every ``every`` seconds, from PostgreSQL, Redis and the scheduler's
    log (its ``scheduler_pass`` lines count what the sweep re-published)."""

    engine: Engine
    broker: redis.Redis
    scheduler_log: Path
    total: int
    every: float
    started: float = 0.0
    rows: list[dict[str, float]] = field(default_factory=list)
    republished: int = 0
    republished_late: int = 0  # while the oldest due charge was older than the window
    window: float = 300.0
    backend_pid: int = 0
    _offset: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with self.engine.connect() as connection:
            self.backend_pid = int(connection.execute(text("SELECT pg_backend_pid()")).one()[0])
            while not self._stop.is_set():
                row = self.sample(connection)
                self.rows.append(row)
                if row["settled"] >= self.total:
                    return
                self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()

    def sample(self, connection: object) -> dict[str, float]:
        counts = connection.execute(  # type: ignore[attr-defined]
            text(
                "SELECT count(*), count(*) FILTER (WHERE status = 'pending'), "
                "count(*) FILTER (WHERE status = 'processing'), "
                "count(*) FILTER (WHERE status = 'unknown'), "
                "count(*) FILTER (WHERE status IN ('paid', 'failed')) FROM charges"
            )
        ).one()
        connection.commit()  # type: ignore[attr-defined]
        claimed, pending, processing, unknown, settled = (int(n) for n in counts)
        seconds = time.monotonic() - self.started
        waiting = (self.total - claimed) + pending
        age = seconds if waiting else 0.0
        new = self._republished_since()
        self.republished += new
        if age > self.window:
            self.republished_late += new
        return {
            "seconds": round(seconds, 1),
            "queued_messages": self._queued(),
            "unacked_messages": int(self.broker.hlen("unacked")),
            "unclaimed": self.total - claimed,
            "pending": pending,
            "processing": processing,
            "unknown": unknown,
            "settled": settled,
            "oldest_due_age_s": round(age, 1),
            "republished": self.republished,
        }

    def _queued(self) -> int:
        keys = [key for key in self.broker.scan_iter(match="billing*") if b"unacked" not in key]
        return sum(int(self.broker.llen(key)) for key in keys if self.broker.type(key) == b"list")

    def _republished_since(self) -> int:
        """``republished`` of the scheduler's pass lines written since the last sample."""
        try:
            with self.scheduler_log.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        total = 0
        for line in complete.splitlines():
            if b'"scheduler_pass"' in line:
                try:
                    total += int(json.loads(line).get("republished", 0))
                except (ValueError, AttributeError):
                    continue
        return total


def peak_mib(pid: int) -> float:
    """VmHWM (peak resident set) of one process, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def postgres_peak_mib(postmaster: int) -> float:
    """The largest VmHWM of the cluster's processes (shared buffers are counted in each)."""
    table = cpu._table()
    pids = [pid for pid, stat in table.items() if stat.ppid == postmaster] + [postmaster]
    return max(peak_mib(pid) for pid in pids)


@dataclass
class Report:
    options: MillionOptions
    import_s: float = 0.0
    wall_s: float = 0.0
    peaks: dict[str, float] = field(default_factory=dict)
    redis_peak: str = ""
    usage: cpu.Usage | None = None
    republished: int = 0
    republished_late: int = 0
    max_queued: int = 0
    max_age_s: float = 0.0
    invariants: dict[str, int] = field(default_factory=dict)
    not_paid: int = 0
    check_s: float = 0.0


class Million:
    def __init__(self, options: MillionOptions, root: Path) -> None:
        self.options = options
        args = ["--workers", str(options.workers)]
        self.bench = Bench(bench_options.parse(args), root)
        self.report = Report(options)

    def run(self) -> Report:
        o, bench = self.options, self.bench
        bench.start()
        env, sandbox = bench.environment("bench_million", o.latency_ms)
        env["BILLING_RECONCILE_AFTER"] = str(o.reconcile_after)
        started = time.monotonic()
        bench.import_rows(env, o.subscriptions, DUE)
        self.report.import_s = time.monotonic() - started
        workers = bench.workers(env, "million", o.concurrency)
        named: dict[str, Managed] = {"sandbox": sandbox}
        named |= {f"worker {n + 1}": worker for n, worker in enumerate(workers)}
        sampler = self._bill(env, named)
        self._measure(named, sampler)
        self._judge(env, sandbox)
        return self.report

    def _bill(self, env: dict[str, str], named: dict[str, Managed]) -> Sampler:
        o, bench = self.options, self.bench
        engine = create_engine(env["BILLING_DATABASE_URL"])
        log = bench.root / "scheduler-million.log"
        client = redis.Redis.from_url(env["BILLING_BROKER_URL"])
        sampler = Sampler(
            engine, client, log, o.subscriptions, o.sample_every, window=float(o.reconcile_after)
        )
        before = bench.cpu_reading(named)
        scheduler = bench.spawn(
            "scheduler-million",
            [sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"],
            env,
        )
        named["scheduler"] = scheduler
        sampler.started = time.monotonic()
        monitor = threading.Thread(target=sampler.run, daemon=True)
        monitor.start()
        monitor.join(timeout=o.subscriptions / 20 + 600)
        sampler.stop()
        self.report.wall_s = time.monotonic() - sampler.started
        if not sampler.rows or sampler.rows[-1]["settled"] < o.subscriptions:
            raise RuntimeError(f"not settled in time: {sampler.rows[-1:]}")
        after = bench.cpu_reading(named, sampler.backend_pid)
        self.report.usage = cpu.Usage.between(before, after, o.subscriptions)
        engine.dispose()
        return sampler

    def _measure(self, named: dict[str, Managed], sampler: Sampler) -> None:
        bench, report = self.bench, self.report
        for name, process in named.items():
            if process.process is not None:
                report.peaks[name] = peak_mib(process.process.pid)
        assert bench.postgres.process is not None and bench.redis.process is not None
        report.peaks["PostgreSQL (largest process)"] = postgres_peak_mib(bench.postgres.process.pid)
        report.peaks["Redis"] = peak_mib(bench.redis.process.pid)
        info = redis.Redis.from_url(bench.redis.url).info("memory")
        report.redis_peak = str(info.get("used_memory_peak_human", "?"))
        report.republished, report.republished_late = sampler.republished, sampler.republished_late
        report.max_queued = int(max(row["queued_messages"] for row in sampler.rows))
        report.max_age_s = max(row["oldest_due_age_s"] for row in sampler.rows)
        write_csv(self.options.csv, sampler.rows)
        self.options.svg.write_text(plot(sampler.rows, self.options))

    def _judge(self, env: dict[str, str], sandbox: Managed) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=sandbox_url(sandbox), timeout=600) as http:
            answer = http.get("/__sandbox__/ledger")
            answer.raise_for_status()
            ledger = answer.json()["payments"]
        app = build_app(load_settings(env))
        try:
            now = app.clocks.billing.now()
            with app.transaction() as session:
                anomalies = invariants.check(session, ledger, now)
                unpaid = session.execute(
                    text("SELECT count(*) FROM charges WHERE status <> 'paid'")
                ).scalar_one()
        finally:
            app.close()
        self.report.invariants = invariants.summary(anomalies)
        self.report.not_paid = int(unpaid)
        self.report.check_s = time.monotonic() - started

    def stop(self) -> None:
        self.bench.stop()


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, float]], options: MillionOptions) -> str:
    xs = [row["seconds"] for row in rows]

    def column(name: str) -> list[float]:
        return [row[name] for row in rows]

    waiting = [row["unclaimed"] + row["pending"] for row in rows]
    title = (
        f"{options.subscriptions:,} subscriptions due at once, {options.latency_ms} ms "
        f"gateway, {options.workers} workers x {options.concurrency} threads"
    )
    return chart(
        title,
        xs,
        [
            Panel(
                "work waiting",
                "count",
                {
                    "charges due, not sent": waiting,
                    "messages in the queue": column("queued_messages"),
                },
            ),
            Panel(
                "age of the oldest due charge not yet sent",
                "seconds",
                {
                    "oldest due age": column("oldest_due_age_s"),
                    f"BILLING_RECONCILE_AFTER ({options.reconcile_after} s)": [
                        float(options.reconcile_after)
                    ]
                    * len(rows),
                },
            ),
            Panel(
                "charges re-published by the sweep (cumulative)",
                "count",
                {"re-published": column("republished")},
            ),
        ],
    )


def render(report: Report) -> str:
    o = report.options
    rate = o.subscriptions / report.wall_s if report.wall_s else 0.0
    lines = [
        f"{o.subscriptions:,} subscriptions due at once, {o.latency_ms} ms gateway, "
        f"{o.workers} worker processes x {o.concurrency} threads, "
        f"BILLING_RECONCILE_AFTER {o.reconcile_after} s",
        f"import: {report.import_s:,.0f} s; billing, scheduler start to the last outcome: "
        f"{report.wall_s:,.0f} s ({report.wall_s / 60:.1f} min, {rate:,.0f} charges/s); "
        f"not paid: {report.not_paid}",
        "peak memory (VmHWM): "
        + ", ".join(f"{name} {mib:,.0f} MiB" for name, mib in report.peaks.items())
        + f"; Redis used_memory_peak {report.redis_peak}",
        f"queue: at most {report.max_queued:,} messages; oldest due charge at most "
        f"{report.max_age_s:,.0f} s old",
        f"re-published by the sweep: {report.republished:,} "
        f"({report.republished_late:,} while the oldest due charge was older than "
        f"BILLING_RECONCILE_AFTER)",
    ]
    if report.usage is not None:
        parts = [
            f"{name} {report.usage.per_thousand(name):.2f}" for name in sorted(report.usage.seconds)
        ]
        lines.append("CPU seconds per 1,000 charges: " + ", ".join(parts))
    broken = {kind: n for kind, n in report.invariants.items() if n}
    verdict = "all hold" if not broken else f"BROKEN: {broken}"
    lines.append(
        f"invariants against the sandbox's ledger ({len(report.invariants)} kinds, "
        f"{report.check_s:,.0f} s to check): {verdict}"
    )
    lines.append(f"samples: {o.csv}; plot: {o.svg}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    return run_in_scratch("billing-million-", lambda root: Million(options, root), _measure)


def _measure(million: Million) -> Outcome:
    report = million.run()
    passed = not any(report.invariants.values()) and report.not_paid == 0
    return Outcome(0 if passed else 1, render(report))


if __name__ == "__main__":
    from chaos.processes import exit_with

    exit_with(main())
