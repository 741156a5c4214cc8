"""``billing charges refund`` and ``billing refunds``: refunds of paid charges.

The refund command runs every step in its own process (write the refund, send the cancel,
record the answer, look it up once when the answer was not seen) and exits non-zero unless
the refund succeeded. A refund left unknown is settled by the scheduler's sweep (the
``billing.refund`` task) or by ``billing refunds reconcile``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.bootstrap import make_gateway
from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.params import ID_TYPE, whole
from billing.cli.runtime import Runtime
from billing.db.tables import Refund
from billing.domain.refunds import RefundStatus
from billing.errors import BillingError, NotFound
from billing.services.refunds import (
    RefundRunner,
    check_request,
    refunds_to_reconcile,
)
from billing.views import show_refund

STATUSES = [str(status) for status in RefundStatus]
SWEEP_LIMIT = 1000
CONNECTIONS = 2


@click.command()
@click.argument("charge_id", metavar="CHARGE_ID", type=ID_TYPE)
@click.option("--reason", required=True, help="Why (sent to PortOne, kept in the history).")
@click.option("--amount", type=whole(), help="KRW to refund; default: all that is left.")
@json_option
@click.pass_obj
def refund(
    runtime: Runtime, charge_id: int, reason: str, amount: int | None, as_json: bool
) -> None:
    """Refund a paid charge in full, or --amount KRW of it, through PortOne.

    Never more than is left to refund, and one refund of a charge at a time. Exits non-zero
    unless PortOne confirmed the refund.
    """
    check_request(amount, reason)
    app = runtime.app
    gateway = make_gateway(runtime.settings, connections=CONNECTIONS)
    try:
        refund_id = RefundRunner(app, gateway).refund(charge_id, amount, reason)
    finally:
        gateway.close()
    with app.transaction() as session:
        view = refund_view(session, _refund(session, refund_id), runtime)
    if as_json:
        emit_json(view)
    elif view["status"] == RefundStatus.SUCCEEDED:
        click.echo(
            f"refunded {view['amount']:,} KRW of charge {view['charge_id']} (refund "
            f"{view['id']}): {view['refunded_amount']:,} of {view['charge_amount']:,} KRW "
            f"refunded, {view['refundable']:,} KRW left"
        )
    _fail_unless_succeeded(view)


def _fail_unless_succeeded(view: dict[str, Any]) -> None:
    where = f"refund {view['id']} of charge {view['charge_id']}"
    if view["status"] == RefundStatus.FAILED:
        raise BillingError(f"{where} failed, nothing was refunded: {view['fail_reason']}")
    if view["status"] != RefundStatus.SUCCEEDED:
        raise BillingError(
            f"{where} is {view['status']}: PortOne's answer was not seen "
            f"({view['fail_reason'] or 'no answer'}); the scheduler, or `billing refunds "
            f"reconcile {view['id']}`, will settle it"
        )


@click.group()
def refunds() -> None:
    """Refunds of paid charges (ask for one with `billing charges refund`)."""


@refunds.command("list")
@click.option("--charge", "charge_id", type=ID_TYPE, help="Only this charge's.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@json_option
@click.pass_obj
def list_(runtime: Runtime, charge_id: int | None, status: str | None, as_json: bool) -> None:
    """List refunds, oldest first."""
    query = select(Refund).order_by(Refund.id)
    if charge_id is not None:
        query = query.where(Refund.charge_id == charge_id)
    if status is not None:
        query = query.where(Refund.status == status)
    with runtime.app.transaction() as session:
        views = [refund_view(session, row, runtime) for row in session.scalars(query)]
    if as_json:
        emit_json(views)
        return
    columns = ("ID", "CHARGE", "KRW", "STATUS", "SENDS", "CREATED", "REASON")
    rows = [
        (
            v["id"],
            v["charge_id"],
            f"{v['amount']:,}",
            v["status"],
            v["sends"],
            v["created_at"],
            v["fail_reason"] or v["reason"],
        )
        for v in views
    ]
    emit_table(columns, rows, "no refunds")


@refunds.command()
@click.argument("refund_ids", metavar="[REFUND_ID]...", nargs=-1, type=ID_TYPE)
@json_option
@click.pass_obj
def reconcile(runtime: Runtime, refund_ids: tuple[int, ...], as_json: bool) -> None:
    """Settle open refunds with PortOne now: the ones named, else every unknown one and
    every one whose process died (left pending or processing past BILLING_RECONCILE_AFTER).
    """
    app = runtime.app
    gateway = make_gateway(runtime.settings, connections=CONNECTIONS)
    try:
        ids = list(refund_ids) or _open_refunds(runtime)
        runner = RefundRunner(app, gateway)
        for refund_id in ids:
            runner.reconcile(refund_id)
    finally:
        gateway.close()
    with app.transaction() as session:
        views = [refund_view(session, _refund(session, i), runtime) for i in ids]
    if as_json:
        emit_json(views)
        return
    for v in views:
        click.echo(f"refund {v['id']} of charge {v['charge_id']}: {v['status']}")
    if not views:
        click.echo("no refund to settle")


def _open_refunds(runtime: Runtime) -> list[int]:
    window = timedelta(seconds=runtime.settings.reconcile_after)
    with runtime.app.transaction() as session:
        return refunds_to_reconcile(
            session, runtime.app.clocks.system.now(), window, SWEEP_LIMIT, lookup_every=0
        )


def _refund(session: Session, refund_id: int) -> Refund:
    row = session.get(Refund, refund_id)
    if row is None:
        raise NotFound(f"no refund {refund_id}")
    return row


def refund_view(session: Session, row: Refund, runtime: Runtime) -> dict[str, Any]:
    return show_refund(session, row, runtime.settings_zone)
