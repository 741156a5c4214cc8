"""The ``billing`` command line. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys

import click
from sqlalchemy.exc import OperationalError

from billing import __version__
from billing.cli.runtime import Runtime
from billing.errors import BillingError
from billing.logs import redact
from billing.services.history import acting_as

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
# The product's own processes: what they write, the schedule did, not the person at the shell.
DAEMONS = frozenset({"scheduler", "run", "drain", "serve", "sandbox", "demo"})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="billing")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Recurring billing on PortOne V1 billing keys (NHN KCP kcp_billing).

    Configuration comes from BILLING_* environment variables (see README, "Configuration").
    With none set, everything runs embedded: SQLite file billing.db, in-process broker,
    and the bundled PortOne sandbox.
    """
    runtime = Runtime()
    ctx.obj = runtime
    ctx.call_on_close(runtime.close)
    if ctx.invoked_subcommand not in DAEMONS:
        ctx.with_resource(acting_as("cli"))  # every event this command writes says `cli`


def _register() -> None:
    from billing.cli import (
        api_keys,
        billing_keys,
        charges,
        checkout,
        clock,
        customers,
        db,
        demo,
        imports,
        ops,
        plans,
        reconcile,
        refunds,
        sandbox,
        serve,
        subscriptions,
    )

    charges.charges.add_command(refunds.refund)
    customers.customers.add_command(billing_keys.register)
    customers.customers.add_command(billing_keys.delete)

    for command in (
        db.db,
        plans.plans,
        customers.customers,
        subscriptions.subscriptions,
        charges.charges,
        refunds.refunds,
        ops.scheduler,
        ops.run,
        ops.drain,
        ops.status,
        clock.clock,
        sandbox.sandbox,
        demo.demo,
        checkout.checkout_params,
        serve.serve,
        api_keys.api_keys,
        reconcile.reconcile,
        imports.import_group,
    ):
        cli.add_command(command)


def fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"billing: error: {' '.join(redact(message).split())}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs ``cli`` and turns every failure into one line."""
    _register()
    try:
        cli.main(args=argv, prog_name="billing", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "billing"
        fail(f"{where}: {exc.format_message()} (see {where} --help)", EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        fail("aborted")
    except BillingError as exc:
        fail(exc.message, exc.exit_code)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        fail(f"database error: {reason}")
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("BILLING_DEBUG"):
            raise
        fail(
            f"internal error: {type(exc).__name__}: {exc} (BILLING_DEBUG=1 shows the traceback)",
            EXIT_INTERNAL,
        )
