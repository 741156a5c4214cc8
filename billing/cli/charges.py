"""``billing charges``: every attempt to charge a period."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.params import ID_TYPE
from billing.cli.runtime import Runtime
from billing.db.tables import Charge
from billing.domain.charges import ChargeStatus
from billing.views import charge_view

STATUSES = [str(status) for status in ChargeStatus]


@click.group()
def charges() -> None:
    """Charges: one row per attempt to charge one period."""


def list_charges(
    session: Session, subscription_id: int | None, status: str | None, limit: int | None
) -> list[Charge]:
    query = select(Charge).order_by(Charge.id)
    if subscription_id is not None:
        query = query.where(Charge.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Charge.status == status)
    return list(session.scalars(query.limit(limit)))


@charges.command("list")
@click.option("--subscription", "subscription_id", type=ID_TYPE)
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", type=ID_TYPE, help="At most this many, oldest first.")
@json_option
@click.pass_obj
def list_(
    runtime: Runtime,
    subscription_id: int | None,
    status: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List charges, oldest first."""
    with runtime.app.transaction() as session:
        rows = list_charges(session, subscription_id, status, limit)
    views = [charge_view(row, runtime.settings_zone) for row in rows]
    if as_json:
        emit_json(views)
        return
    columns = (
        "ID",
        "SUB",
        "MERCHANT_UID",
        "KRW",
        "STATUS",
        "ATTEMPT",
        "PERIOD START",
        "DECLINE",
        "REASON",
    )
    table = [
        (
            v["id"],
            v["subscription_id"],
            v["merchant_uid"],
            f"{v['amount']:,}",
            v["status"],
            v["attempt"],
            v["period_start"],
            v["decline_class"],
            v["fail_reason"],
        )
        for v in views
    ]
    emit_table(columns, table, "no charges")
