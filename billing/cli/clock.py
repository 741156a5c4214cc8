"""``billing clock``: the shared test clock (sandbox mode only)."""

from __future__ import annotations

from datetime import datetime

import click

from billing.cli.output import parse_option_time
from billing.cli.runtime import Runtime
from billing.clock import DatabaseClock
from billing.domain.times import format_time
from billing.services.clock_control import forward, sandbox_clock


@click.group()
def clock() -> None:
    """The shared test clock: stands still until set or advanced (sandbox mode only)."""


def _clock(runtime: Runtime) -> DatabaseClock:
    return sandbox_clock(runtime.settings, runtime.app.clocks.billing)


def _show(runtime: Runtime, moment: datetime) -> None:
    click.echo(format_time(moment, runtime.settings_zone))


@clock.command()
@click.pass_obj
def show(runtime: Runtime) -> None:
    """Print the clock's now."""
    _show(runtime, _clock(runtime).now())


@clock.command("set")
@click.argument("time")
@click.pass_obj
def set_(runtime: Runtime, time: str) -> None:
    """Set the clock to TIME (ISO 8601)."""
    moment = parse_option_time("TIME", time, runtime.settings_zone)
    _show(runtime, _clock(runtime).set(moment))


@clock.command()
@click.argument("duration")
@click.pass_obj
def advance(runtime: Runtime, duration: str) -> None:
    """Move the clock forward by DURATION: 90s, 12h, 3d, 2w, or 1 month, 1 year."""
    test_clock = _clock(runtime)
    now = test_clock.now()
    _show(runtime, test_clock.set(_forward(now, duration, runtime)))


def _forward(now: datetime, duration: str, runtime: Runtime) -> datetime:
    return forward(now, duration, runtime.settings_zone)
