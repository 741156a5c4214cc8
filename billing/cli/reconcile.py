"""``billing reconcile ledger``: PortOne's ledger compared with ours, and repaired (SPEC 10)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import click

from billing.bootstrap import make_gateway
from billing.cli.output import emit_json, emit_table, json_option, parse_option_time
from billing.cli.runtime import Runtime
from billing.domain.times import format_time
from billing.errors import BillingError
from billing.portone.ledger import MAX_DAYS, LedgerUnreadable
from billing.services.catalog_cache import CatalogCache
from billing.services.ledger import LedgerReport, reconcile_ledger

EXIT_DISAGREE = 1


@click.group()
def reconcile() -> None:
    """Compare what PortOne holds with what this database records."""


@reconcile.command()
@click.option("--since", metavar="DATE", help="start of the window (default: 90 days ago)")
@click.option("--until", metavar="DATE", help="end of the window (default: now)")
@json_option
@click.pass_obj
def ledger(runtime: Runtime, since: str | None, until: str | None, as_json: bool) -> None:
    """Read PortOne's paid and cancelled payments for the window and compare them with ours,
    merchant_uid by merchant_uid: what we do not record as PortOne does is repaired (paid, or
    refunded when it was refunded in PortOne's console); what cannot be repaired is reported.
    Times are PortOne's (the real clock, not the test clock). Exit 0 when both ledgers agree
    after the repairs, 1 when something was only reported. Run it after restoring a backup.
    """
    zone = runtime.settings_zone
    end = (
        parse_option_time("--until", until, zone)
        if until
        else runtime.app.clocks.system.now().astimezone(zone)
    )
    start = parse_option_time("--since", since, zone) if since else end - timedelta(MAX_DAYS)
    gateway = make_gateway(runtime.settings, connections=2)
    try:
        report = reconcile_ledger(runtime.app, gateway, start, end, CatalogCache())
    except LedgerUnreadable as exc:
        raise BillingError(f"cannot read PortOne's ledger: {exc}") from None
    finally:
        gateway.close()
    _show(report, as_json, runtime)
    if not report.agree:
        raise SystemExit(EXIT_DISAGREE)


def _show(report: LedgerReport, as_json: bool, runtime: Runtime) -> None:
    zone = runtime.settings_zone
    summary = (
        f"PortOne ledger {format_time(report.since, zone)} to {format_time(report.until, zone)}: "
        f"{report.read} payments, {report.ours} ours; {report.repaired} repaired, "
        f"{len(report.findings) - report.repaired} reported"
    )
    if as_json:
        emit_json(
            {
                "since": format_time(report.since, zone),
                "until": format_time(report.until, zone),
                "read": report.read,
                "ours": report.ours,
                "agree": report.agree,
                "findings": [asdict(finding) for finding in report.findings],
            }
        )
        return
    rows = [
        (f.merchant_uid, f.imp_uid, f.portone, f.ours, f"{f.verdict}: {f.detail}".rstrip(": "))
        for f in report.findings
    ]
    emit_table(
        ("MERCHANT_UID", "IMP_UID", "PORTONE", "HERE", "WHAT WAS DONE"), rows, "both ledgers agree"
    )
    click.echo(summary + ("" if report.agree else ": see the rows above"))
