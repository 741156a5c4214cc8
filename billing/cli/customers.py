"""``billing customers``: holders of billing keys."""

from __future__ import annotations

import click

from billing.cli.output import emit_json, json_option
from billing.cli.runtime import Runtime
from billing.services import customers as customer_service
from billing.views import customer_view


@click.group()
def customers() -> None:
    """Customers, named by the customer_uid of their PortOne billing key."""


@customers.command()
@click.argument("customer_uid")
@click.option("--name", help="Buyer name.")
@click.option("--email", help="Where e-mail notices go.")
@click.option("--phone", help="Buyer phone number.")
@json_option
@click.pass_obj
def add(
    runtime: Runtime,
    customer_uid: str,
    name: str | None,
    email: str | None,
    phone: str | None,
    as_json: bool,
) -> None:
    """Add a customer whose billing key is stored at PortOne as CUSTOMER_UID."""
    customer_service.check_customer_uid(customer_uid)
    customer_service.check_contact(name, email, phone)
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        customer = customer_service.add_customer(
            session, customer_uid, now, name=name, email=email, phone=phone
        )
    if as_json:
        emit_json(customer_view(customer, runtime.settings_zone))
        return
    click.echo(f"added customer {customer.customer_uid}")


@customers.command("card-updated")
@click.argument("customer_uid")
@json_option
@click.pass_obj
def card_updated(runtime: Runtime, customer_uid: str, as_json: bool) -> None:
    """The customer's card changed: retry every past-due subscription at once."""
    from billing.services.subscriptions import card_updated as retry_past_due

    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        rows = retry_past_due(session, customer_uid, now)
        ids = [row.id for row in rows]
    if as_json:
        emit_json({"customer_uid": customer_uid, "retried": ids})
        return
    shown = ", ".join(str(i) for i in ids) or "none past due"
    click.echo(f"{customer_uid}: retrying at once: {shown}")
