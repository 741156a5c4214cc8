"""``billing import portone-schedules``: take customers over from PortOne's hosted scheduler
(SPEC 10)."""

from __future__ import annotations

from pathlib import Path

import click

from billing.bootstrap import make_gateway
from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.runtime import Runtime
from billing.domain.times import format_time
from billing.services import plan_store as catalog_service
from billing.services.schedule_import import Outcome, Takeover, read_customers

EXIT_NOT_DONE = 1


@click.group("import")
def import_group() -> None:
    """Move billing here from elsewhere."""


@import_group.command("portone-schedules")
@click.option(
    "--customers",
    "file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV (header customer_uid,plan_id) or JSON lines with those two fields",
)
@json_option
@click.pass_obj
def portone_schedules(runtime: Runtime, file: Path, as_json: bool) -> None:
    """Take over the payments PortOne's hosted scheduler holds for the customers in FILE.

    For each customer: a subscription is created on its plan, held (not charged here); every
    schedule still waiting at PortOne is revoked (POST /subscribe/payments/unschedule); the
    schedules are read back, and the subscription is charged here from the first one PortOne
    revoked. A schedule PortOne fired meanwhile is never charged here. No period is charged
    by both or by neither, also when this is killed half-way: run it again and it finishes
    the customers it left held. Refused (nothing changed): a plan whose price differs from
    the schedules, a customer with nothing waiting at PortOne, a customer who already has a
    live subscription here. Exit 0 when every customer is taken over, 1 otherwise.
    """
    app = runtime.app
    with app.transaction() as session:
        catalog_service.ensure_catalog(session, runtime.settings, app.clocks.billing.now())
        plans = {plan.id for plan in catalog_service.current_plans(session)}
    wanted = read_customers(file, plans)
    gateway = make_gateway(runtime.settings, connections=2)
    try:
        outcomes = Takeover(app, gateway).run(wanted)
    finally:
        gateway.close()
    _show(outcomes, as_json, runtime)
    if not all(outcome.done for outcome in outcomes):
        raise SystemExit(EXIT_NOT_DONE)


def _show(outcomes: list[Outcome], as_json: bool, runtime: Runtime) -> None:
    zone = runtime.settings_zone
    counts = {
        result: sum(1 for o in outcomes if o.result == result)
        for result in ("taken_over", "already", "held", "refused")
    }
    if as_json:
        emit_json({"customers": [_json(o, runtime) for o in outcomes], **counts})
        return
    rows = [
        (
            o.customer_uid,
            o.result,
            o.subscription_id or "-",
            format_time(o.first_charge_at, zone) if o.first_charge_at else "-",
            f"{len(o.revoked)}/{len(o.fired)}/{len(o.declined)}",
            o.detail,
        )
        for o in outcomes
    ]
    columns = ("CUSTOMER_UID", "RESULT", "SUBSCRIPTION", "FIRST CHARGE HERE")
    emit_table((*columns, "REVOKED/FIRED/DECLINED", "DETAIL"), rows, "no customers")
    click.echo(", ".join(f"{count} {result.replace('_', ' ')}" for result, count in counts.items()))


def _json(outcome: Outcome, runtime: Runtime) -> dict[str, object]:
    first = outcome.first_charge_at
    return {
        "customer_uid": outcome.customer_uid,
        "result": outcome.result,
        "detail": outcome.detail,
        "subscription_id": outcome.subscription_id,
        "first_charge_at": format_time(first, runtime.settings_zone) if first else None,
        "revoked": list(outcome.revoked),
        "fired": list(outcome.fired),
        "declined": list(outcome.declined),
    }
