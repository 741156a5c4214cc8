"""``billing plans``: the plan catalog."""

from __future__ import annotations

import itertools
from pathlib import Path

import click

from billing.catalog_file import load_catalog_file
from billing.cli.output import emit_json, emit_table, json_option, parse_option_time
from billing.cli.params import whole
from billing.cli.runtime import Runtime
from billing.domain.calendar import periods
from billing.domain.times import format_time
from billing.services import plan_store
from billing.views import plan_view, preview_view


@click.group()
def plans() -> None:
    """Plan catalog: check, load, list and preview plans."""


@plans.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def check(runtime: Runtime, file: Path) -> None:
    """Validate a catalog FILE without changing anything."""
    catalog = load_catalog_file(file, runtime.settings.timezone)
    ids = ", ".join(plan.id for plan in catalog.plans)
    click.echo(f"{file}: ok, {len(catalog.plans)} plans ({ids})")


@plans.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def load(runtime: Runtime, file: Path) -> None:
    """Validate FILE, then upsert all its plans atomically.

    A changed plan gets a new version that applies from each subscription's next period.
    Plans missing from FILE are archived; removing one with live subscriptions is refused.
    """
    catalog, digest = plan_store.read_catalog(file, runtime.settings)
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        report = plan_store.load_catalog(session, catalog, str(file), digest, now)
    click.echo(f"{file}: loaded: {report.summary()}")


@plans.command("list")
@json_option
@click.pass_obj
def list_(runtime: Runtime, as_json: bool) -> None:
    """List the plans of the loaded catalog."""
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        plan_store.ensure_catalog(session, runtime.settings, now)
        current = plan_store.current_plans(session)
    if as_json:
        emit_json([plan_view(plan) for plan in current])
        return
    rows = [
        (p.id, p.version, p.name, f"{p.amount:,}", p.schedule_text, p.trial_days, p.zone.key)
        for p in current
    ]
    columns = ("ID", "VERSION", "NAME", "KRW", "SCHEDULE", "TRIAL DAYS", "ZONE")
    emit_table(columns, rows, "no plans loaded")


@plans.command()
@click.argument("plan_id")
@click.option("--start", help="Start of the subscription (ISO 8601; default now).")
@click.option("--count", type=whole(1, 1000), default=12, show_default=True)
@json_option
@click.pass_obj
def preview(runtime: Runtime, plan_id: str, start: str | None, count: int, as_json: bool) -> None:
    """The first COUNT charge times and amounts of a subscription to PLAN_ID."""
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        plan_store.ensure_catalog(session, runtime.settings, now)
        plan = plan_store.current_plan(session, plan_id)
    begin = parse_option_time("--start", start, plan.zone) if start else now
    charges = preview_view(plan, list(itertools.islice(periods(plan, begin), count)))
    if as_json:
        emit_json(charges)
        return
    click.echo(f"{plan.id} ({plan.schedule_text}) from {format_time(begin, plan.zone)}:")
    emit_table(
        ("#", "AT", "KRW"),
        [(i + 1, c["at"], f"{c['amount']:,}") for i, c in enumerate(charges)],
        "",
    )
