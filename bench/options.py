"""Command-line options of the benchmark."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

STEPS = ("sandbox", "claims", "zero", "latency", "rate", "idle", "ops", "api", "ledger")


@dataclass(frozen=True)
class Options:
    charges: int  # subscriptions due at once for the zero-latency run
    slice: int  # subscriptions due at once for the latency run
    latency_ms: int
    workers: int
    concurrency_zero: int
    concurrency_latency: int
    empty_tasks: int
    idle_sizes: tuple[int, ...]
    api_requests: int
    api_clients: int
    rate_rps: float
    rate_charges: int
    ledger_payments: int  # PortOne's ledger for `billing reconcile ledger`
    skip: frozenset[str]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--charges",
        type=_positive,
        default=20_000,
        help="subscriptions due at once, zero gateway latency (default 20000)",
    )
    parser.add_argument(
        "--slice",
        type=_positive,
        default=50_000,
        help="subscriptions due at once for the latency run (default 50000)",
    )
    parser.add_argument(
        "--latency-ms", type=_positive, default=300, help="gateway latency of that run"
    )
    parser.add_argument("--workers", type=_positive, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency-zero",
        type=_positive,
        default=8,
        help="threads per worker process at 0 ms (default 8)",
    )
    parser.add_argument(
        "--concurrency-latency",
        type=_positive,
        default=32,
        help="threads per worker process in the latency run (default 32)",
    )
    parser.add_argument(
        "--empty-tasks",
        type=_positive,
        default=20_000,
        help="empty Celery tasks for the ceiling (default 20000)",
    )
    parser.add_argument(
        "--idle-sizes",
        default="10000,1000000",
        help="table sizes for the idle pass and memory (default 10000,1000000)",
    )
    parser.add_argument(
        "--api-requests",
        type=_positive,
        default=2000,
        help="requests of each kind for the HTTP API (default 2000)",
    )
    parser.add_argument(
        "--api-clients",
        type=_positive,
        default=8,
        help="client threads for the HTTP API (default 8)",
    )
    parser.add_argument(
        "--rate-rps",
        type=float,
        default=150.0,
        help="BILLING_PORTONE_MAX_RPS of the rate ceiling run (default 150)",
    )
    parser.add_argument(
        "--rate-charges",
        type=_positive,
        default=6000,
        help="charges of each rate ceiling run (default 6000)",
    )
    parser.add_argument(
        "--ledger-payments",
        type=_positive,
        default=100_000,
        help="payments at the sandbox for `billing reconcile ledger` (default 100000)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated: {', '.join(STEPS)}")
    args = parser.parse_args(argv)
    skip = frozenset(part for part in args.skip.split(",") if part)
    if not args.rate_rps > 0:
        parser.error(f"--rate-rps: must be greater than 0, got {args.rate_rps}")
    unknown = sorted(skip - set(STEPS))
    if unknown:
        parser.error(f"--skip: unknown step {unknown[0]!r} (known: {', '.join(STEPS)})")
    try:
        sizes = tuple(int(size) for size in args.idle_sizes.split(",") if size)
    except ValueError:
        parser.error(f"--idle-sizes: expected numbers separated by commas, got {args.idle_sizes!r}")
    return Options(
        charges=args.charges,
        slice=args.slice,
        latency_ms=args.latency_ms,
        workers=args.workers,
        concurrency_zero=args.concurrency_zero,
        concurrency_latency=args.concurrency_latency,
        empty_tasks=args.empty_tasks,
        idle_sizes=sizes,
        api_requests=args.api_requests,
        api_clients=args.api_clients,
        rate_rps=args.rate_rps,
        rate_charges=args.rate_charges,
        ledger_payments=args.ledger_payments,
        skip=skip,
    )
