"""``billing demo``: a simulated year in the bundled sandbox, with a report."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from billing.cli.params import whole


@click.command()
@click.option("--customers", type=whole(1, 100_000), default=300, show_default=True)
@click.option("--days", type=whole(1, 3660), default=365, show_default=True)
@click.option("--seed", type=whole(), default=7, show_default=True)
@click.option("--concurrency", "-c", type=whole(1, 128), default=8, show_default=True)
def demo(customers: int, days: int, seed: int, concurrency: int) -> None:
    """A simulated year of billing in the sandbox, then a report and an invariants check.

    Runs in a fresh SQLite database in a temporary directory (your configured database is
    not touched), with the bundled PortOne sandbox scripted to decline some cards and to
    inject faults (5xx, commit-then-timeout, connection resets, token expiry), through the
    real scheduler, worker and reconciliation code. Exits 1 if any invariant is broken.
    """
    from billing.demo import DemoConfig, run_demo

    config = DemoConfig(customers=customers, days=days, seed=seed, concurrency=concurrency)
    sys.exit(run_demo(config, Console()))
