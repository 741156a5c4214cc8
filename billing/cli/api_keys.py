"""``billing api-keys``: the keys of the merchant's HTTP API (``/v1``)."""

from __future__ import annotations

import click

from billing.cli.output import emit_json, emit_table, json_option
from billing.cli.runtime import Runtime
from billing.services import api_keys as service
from billing.views import api_key_view


@click.group("api-keys")
def api_keys() -> None:
    """Keys for the HTTP API (Authorization: Bearer KEY); stored only as hashes."""


@api_keys.command()
@click.option("--name", required=True, help="Who uses the key; it names them in the event log.")
@click.option("--read-only", is_flag=True, help="GET only: writes are refused with 403.")
@json_option
@click.pass_obj
def create(runtime: Runtime, name: str, read_only: bool, as_json: bool) -> None:
    """Create a key and print it. It is shown this once: only its hash is kept."""
    service.check_name(name)
    with runtime.app.transaction() as session:
        new = service.create_key(session, name, read_only, runtime.app.clocks.system.now())
    if as_json:
        emit_json(new.view())
        return
    access = "read-only " if read_only else ""
    click.echo(f"created {access}API key {name!r}; it is shown only this once:")
    click.echo(new.key)


@api_keys.command("list")
@json_option
@click.pass_obj
def list_(runtime: Runtime, as_json: bool) -> None:
    """List keys (never the keys themselves): name, access, created, last used, revoked."""
    zone = runtime.settings_zone
    with runtime.app.transaction() as session:
        views = [api_key_view(row, zone) for row in service.list_keys(session)]
    if as_json:
        emit_json(views)
        return
    columns = ("NAME", "PREFIX", "ACCESS", "CREATED", "LAST USED", "REVOKED")
    rows = [
        (
            v["name"],
            v["prefix"],
            "read-only" if v["read_only"] else "read-write",
            v["created_at"],
            v["last_used_at"],
            v["revoked_at"],
        )
        for v in views
    ]
    emit_table(columns, rows, "no API keys")


@api_keys.command()
@click.argument("name")
@click.pass_obj
def revoke(runtime: Runtime, name: str) -> None:
    """Revoke the live key NAME: refused (401) from its next request on."""
    with runtime.app.transaction() as session:
        service.revoke_key(session, name, runtime.app.clocks.system.now())
    click.echo(f"revoked API key {name!r}")
