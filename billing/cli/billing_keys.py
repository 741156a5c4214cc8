"""``billing customers register`` and ``billing customers delete``: billing keys by API.

The card data given on the command line is checked, sent to PortOne and forgotten; nothing
printed, logged or stored carries more than the last four digits of the card number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from zoneinfo import ZoneInfo

import click

from billing.bootstrap import make_gateway
from billing.cli.output import emit_json, json_option
from billing.cli.runtime import Runtime
from billing.services import billing_keys as service
from billing.services.customers import check_customer_uid

CONNECTIONS = 1
Command = TypeVar("Command", bound=Callable[..., object])


def card_options(required: bool) -> Callable[[Command], Command]:
    """--card-number, --expiry, --birth and --pwd-2digit (the card data, never kept)."""
    options = (
        click.option(
            "--card-number",
            required=required,
            metavar="N",
            help="Card number, 15-16 digits (dashes allowed). Sent to PortOne only.",
        ),
        click.option(
            "--expiry", required=required, metavar="YYYY-MM", help="The card's expiry month."
        ),
        click.option(
            "--birth",
            required=required,
            metavar="YYMMDD",
            help="Holder's birth date, or a 10-digit business number (corporate card).",
        ),
        click.option("--pwd-2digit", metavar="NN", help="First 2 digits of the card password."),
    )

    def apply(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@click.command()
@click.argument("customer_uid")
@card_options(required=True)
@json_option
@click.pass_obj
def register(
    runtime: Runtime,
    customer_uid: str,
    card_number: str,
    expiry: str,
    birth: str,
    pwd_2digit: str | None,
    as_json: bool,
) -> None:
    """Issue a billing key for CUSTOMER_UID (added with `billing customers add`) at PortOne.

    A key already registered for CUSTOMER_UID is replaced. The card data is never stored
    or logged; with BILLING_PORTONE_SITE_CODE set, the key is issued on kcp_billing.
    """
    settings = runtime.settings
    today = service.today_in(ZoneInfo(settings.timezone), runtime.app.clocks.system.now())
    card = service.parse_card(card_number, expiry, birth, pwd_2digit, today)
    check_customer_uid(customer_uid)
    pg = f"kcp_billing.{settings.site_code}" if settings.site_code else None
    client = make_gateway(settings, connections=CONNECTIONS)
    try:
        result = service.register_key(runtime.app, client, customer_uid, card, pg)
    finally:
        client.close()
    if as_json:
        emit_json(result.view())
        return
    card_text = " ".join(part for part in (result.card_name, result.card_number) if part)
    click.echo(f"registered a billing key for {customer_uid}: {card_text or 'card'}")


@click.command()
@click.argument("customer_uid")
@click.option("--reason", help="Why (sent to PortOne, kept in the history).")
@click.option("--force", is_flag=True, help="Delete even if live subscriptions use the key.")
@json_option
@click.pass_obj
def delete(
    runtime: Runtime, customer_uid: str, reason: str | None, force: bool, as_json: bool
) -> None:
    """Delete the billing key of CUSTOMER_UID at PortOne (the customer itself stays).

    Refused while a subscription that will be charged again uses the key, unless --force:
    its next charge would fail as an unknown customer.
    """
    check_customer_uid(customer_uid)
    service.check_reason(reason)
    client = make_gateway(runtime.settings, connections=CONNECTIONS)
    try:
        result = service.delete_key(runtime.app, client, customer_uid, reason, force=force)
    finally:
        client.close()
    if as_json:
        emit_json(result.view())
        return
    click.echo(f"deleted the billing key of {customer_uid}")
