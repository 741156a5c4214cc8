"""The chaos run's options (``python -m chaos --help``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

SHORT_SUBSCRIPTIONS = 300
SHORT_MONTHS = 2
# The short run moves the clock two days a step: the same charges, faults and kills in half
# the steps (each step waits out PortOne's lost answers on the wall clock), and every pass
# catches up on two days of due work. The full run keeps one day.
SHORT_STEP_HOURS = 48
KILLS_PER_MONTH = 6
ACTIONS_PER_MONTH = 20


@dataclass(frozen=True)
class Options:
    subscriptions: int = 1000
    months: int = 3
    workers: int = 2
    concurrency: int = 8
    seed: int = 1
    worker_kills: int = 3 * KILLS_PER_MONTH
    scheduler_kills: int = 1
    redis_restart: bool = True
    postgres_restart: bool = True
    restore_after: int = 3  # steps between the pg_dump and its restore (0: no restore)
    operator_actions: int = 60
    step_hours: int = 24
    grace_days: int = 8  # faults off, clock moved on: the last dunning retries (7d) come due
    step_timeout: float = 10.0
    settle_timeout: float = 900.0
    keep: bool = False
    short: bool = False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Bill subscriptions through real processes while killing them, then check "
        "every money invariant against the PortOne sandbox's own ledger.",
    )
    p.add_argument("--subscriptions", type=_positive, help="how many (default 1000; --short 300)")
    p.add_argument("--months", type=_positive, help="simulated months (default 3; --short 2)")
    p.add_argument("--workers", type=_positive, default=2, help="celery worker processes (2)")
    p.add_argument("--concurrency", type=_positive, default=8, help="threads per worker (8)")
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice (1)")
    p.add_argument("--kills", type=_natural, help="worker SIGKILLs (default 6 per month)")
    p.add_argument("--scheduler-kills", type=_natural, default=1, help="scheduler SIGKILLs (1)")
    p.add_argument("--no-redis-restart", action="store_true", help="never kill Redis")
    p.add_argument("--no-postgres-restart", action="store_true", help="never kill PostgreSQL")
    p.add_argument(
        "--restore-after",
        type=_natural,
        default=3,
        help="clock steps between a pg_dump and its restore over the live database "
        "(3; 0: no restore)",
    )
    p.add_argument(
        "--operator-actions",
        type=_natural,
        help="cancel/pause/resume/change-plan actions (default 20 per month)",
    )
    p.add_argument("--step-hours", type=_positive, help="clock step (default 24; --short 48)")
    p.add_argument("--settle-timeout", type=float, default=900.0, help="seconds (900)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument(
        "--short",
        action="store_true",
        help="the CI version: 300 subscriptions, 2 months, 2-day steps",
    )
    return p


def parse(argv: list[str] | None = None) -> Options:
    args = parser().parse_args(argv)
    subscriptions = args.subscriptions or (SHORT_SUBSCRIPTIONS if args.short else 1000)
    months = args.months or (SHORT_MONTHS if args.short else 3)
    kills = args.kills if args.kills is not None else KILLS_PER_MONTH * months
    acts = args.operator_actions
    acts = acts if acts is not None else ACTIONS_PER_MONTH * months
    return Options(
        subscriptions=subscriptions,
        months=months,
        workers=args.workers,
        concurrency=args.concurrency,
        seed=args.seed,
        worker_kills=kills,
        scheduler_kills=args.scheduler_kills,
        redis_restart=not args.no_redis_restart,
        postgres_restart=not args.no_postgres_restart,
        restore_after=args.restore_after,
        operator_actions=acts,
        step_hours=args.step_hours or (SHORT_STEP_HOURS if args.short else 24),
        settle_timeout=args.settle_timeout,
        keep=args.keep,
        short=args.short,
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
