"""``billing subscriptions``: create, inspect and change subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy.orm import Session

from billing.bootstrap import make_gateway
from billing.cli.billing_keys import card_options
from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.params import ID_TYPE
from billing.cli.runtime import Runtime
from billing.db.tables import Subscription
from billing.errors import InvalidInput
from billing.services import plan_store
from billing.services import subscriptions as service
from billing.services.billing_keys import parse_card, today_in
from billing.services.first_payment import subscribe_and_pay
from billing.services.subscribing import subscribe
from billing.views import event_view, show_subscription, subscription_zone

ID = click.argument("subscription_id", metavar="ID", type=ID_TYPE)


@click.group()
def subscriptions() -> None:
    """Subscriptions: one customer on one plan."""


def _view(session: Session, row: Subscription) -> dict[str, Any]:
    return show_subscription(session, row)


def _print(view: dict[str, Any], as_json: bool, headline: str | None = None) -> None:
    if as_json:
        emit_json(view)
        return
    if headline:
        click.echo(headline)
    width = max(len(key) for key in view)
    for key, value in view.items():
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")


@subscriptions.command()
@click.option("--customer", "customer_uid", required=True, help="customer_uid of the customer.")
@click.option("--plan", "plan_id", required=True, help="Plan id from the catalog.")
@click.option("--start", help="Start (ISO 8601; default now). Without offset: the plan's zone.")
@card_options(required=False)
@json_option
@click.pass_obj
def create(
    runtime: Runtime,
    customer_uid: str,
    plan_id: str,
    start: str | None,
    card_number: str | None,
    expiry: str | None,
    birth: str | None,
    pwd_2digit: str | None,
    as_json: bool,
) -> None:
    """Subscribe a customer to a plan; the first charge follows the plan's calendar.

    With --card-number (and --expiry, --birth), the first period is paid now with that card
    in one PortOne `onetime` call that also issues the customer's billing key; a declined
    card cancels the new subscription and exits 1. The card data is never stored or logged.
    """
    app = runtime.app
    if card_number is not None or expiry is not None or birth is not None:
        card = (card_number, expiry, birth, pwd_2digit)
        sid = _subscribe_with_card(runtime, customer_uid, plan_id, start, card)
        with app.transaction() as session:
            view = _view(session, service.get_subscription(session, sid))
        _print(view, as_json, f"created subscription {sid}, first period paid by card")
        return
    now = app.clocks.billing.now()
    with app.transaction() as session:
        row = subscribe(session, runtime.settings, customer_uid, plan_id, start, now)
        view = _view(session, row)
    _print(view, as_json, f"created subscription {row.id}")


def _subscribe_with_card(
    runtime: Runtime,
    customer_uid: str,
    plan_id: str,
    start: str | None,
    given: tuple[str | None, str | None, str | None, str | None],
) -> int:
    number, expiry, birth, pwd_2digit = given
    for option, value in (("--card-number", number), ("--expiry", expiry), ("--birth", birth)):
        if value is None:
            raise InvalidInput(f"{option} is needed with the other card options")
    assert number is not None and expiry is not None and birth is not None
    settings = runtime.settings
    today = today_in(ZoneInfo(settings.timezone), runtime.app.clocks.system.now())
    card = parse_card(number, expiry, birth, pwd_2digit, today)
    client = make_gateway(settings, connections=1)
    try:
        paid = subscribe_and_pay(runtime.app, client, customer_uid, plan_id, start, card)
    finally:
        client.close()
    return paid.subscription_id


@subscriptions.command()
@ID
@json_option
@click.pass_obj
def show(runtime: Runtime, subscription_id: int, as_json: bool) -> None:
    """Show one subscription."""
    with runtime.app.transaction() as session:
        view = _view(session, service.get_subscription(session, subscription_id))
    _print(view, as_json)


@subscriptions.command("list")
@click.option("--status", type=click.Choice(service.STATUSES), help="Only this status.")
@json_option
@click.pass_obj
def list_(runtime: Runtime, status: str | None, as_json: bool) -> None:
    """List subscriptions, oldest first."""
    with runtime.app.transaction() as session:
        views = [_view(session, row) for row in service.list_subscriptions(session, status)]
    if as_json:
        emit_json(views)
        return
    columns = ("ID", "CUSTOMER", "PLAN", "STATUS", "PERIOD END", "NEXT CHARGE")
    rows = [
        (
            v["id"],
            v["customer_uid"],
            v["plan_id"],
            v["status"],
            v["current_period_end"],
            v["next_charge_at"],
        )
        for v in views
    ]
    emit_table(columns, rows, "no subscriptions")


def _lifecycle_command(
    name: str,
    verb: str,
    change: Callable[[Session, int, datetime, datetime, dict[str, Any]], Subscription],
) -> Callable[..., None]:
    def command(runtime: Runtime, subscription_id: int, as_json: bool, **options: Any) -> None:
        app = runtime.app
        now, wall = app.clocks.billing.now(), app.clocks.system.now()
        with app.transaction() as session:
            row = change(session, subscription_id, now, wall, options)
            view = _view(session, row)
        _print(view, as_json, f"subscription {row.id} {verb}: now {row.status}")

    command.__name__ = name.replace("-", "_")
    return command


def _add(name: str, verb: str, help_text: str, change: Any, *options: Any) -> None:
    command = _lifecycle_command(name, verb, change)
    for option in (*options, json_option, ID):
        command = option(command)
    subscriptions.command(name, help=help_text)(click.pass_obj(command))


_add(
    "cancel",
    "canceled",
    "Cancel now (no further charges), or at the end of the paid period.",
    lambda s, i, now, wall, o: service.cancel(s, i, now, wall, o["at_period_end"]),
    click.option("--at-period-end", is_flag=True, help="Serve the paid period, then stop."),
)
_add(
    "pause",
    "paused",
    "Pause: no charges until resumed.",
    lambda s, i, now, wall, o: service.pause(s, i, now, wall),
)
_add(
    "resume",
    "resumed",
    "Resume: charged at once and re-anchored to now (inside a paid period: on schedule).",
    lambda s, i, now, wall, o: service.resume(s, i, now),
)
_add(
    "change-plan",
    "changed",
    "Move to another plan from the next period.",
    lambda s, i, now, wall, o: service.change_plan(s, i, o["plan_id"], now),
    click.option("--plan", "plan_id", required=True, help="The new plan id."),
)


@subscriptions.command()
@ID
@json_option
@click.pass_obj
def events(runtime: Runtime, subscription_id: int, as_json: bool) -> None:
    """The append-only history: every state change, attempt and notice, oldest first."""
    from sqlalchemy import select

    from billing.db.tables import Event

    with runtime.app.transaction() as session:
        zone = subscription_zone(session, service.get_subscription(session, subscription_id))
        query = select(Event).where(Event.subscription_id == subscription_id).order_by(Event.id)
        history = [event_view(event, zone) for event in session.scalars(query)]
    if as_json:
        emit_json(history)
        return
    rows = [(h["at"], h["kind"], _summary(h["data"])) for h in history]
    emit_table(("AT", "EVENT", "DETAILS"), rows, "no events")


def _summary(data: dict[str, Any]) -> str:
    shown = {k: v for k, v in data.items() if v not in (None, "", [], {})}
    return " ".join(f"{key}={value}" for key, value in shown.items())


@subscriptions.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def import_(runtime: Runtime, file: Path, as_json: bool) -> None:
    """Bulk-create subscriptions from FILE: all or nothing.

    CSV with a header, or JSON lines, with the columns customer_uid, plan_id, start
    (optional, ISO 8601; default now), name, email, phone. Missing customers are created;
    existing ones are left as they are. FILE may be a pipe (/dev/stdin). Every row is
    validated before the first is written; memory holds 5,000 rows at a time.
    """
    import time

    from billing.services.imports import import_file

    started = time.monotonic()
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        plan_store.ensure_catalog(session, runtime.settings, now)
        report = import_file(session, file, now)
    elapsed = time.monotonic() - started
    if as_json:
        emit_json({**vars(report), "seconds": round(elapsed, 3)})
        return
    click.echo(
        f"{file}: imported {report.subscriptions} subscriptions "
        f"({report.new_customers} new customers) in {elapsed:.1f} s, "
        f"ids {report.first_id}-{report.last_id}"
    )
