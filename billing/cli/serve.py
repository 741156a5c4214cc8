"""``billing serve``: the web process (the HTTP API, PortOne notices, health, readiness,
metrics)."""

from __future__ import annotations

import signal

import click

from billing import preflight
from billing.cli.params import whole
from billing.cli.runtime import Runtime
from billing.logs import configure
from billing.web.config import ALLOW_VARIABLE, WebConfig, parse_allowlist
from billing.web.listener import address, listen


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    type=whole(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--webhook-allow",
    envvar=ALLOW_VARIABLE,
    default="",
    show_envvar=True,
    help="Only these sources may post notices: addresses or CIDR blocks, "
    "comma-separated; 'portone' is PortOne's published list. Default: any "
    "(notices are verified with PortOne either way).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="One log line per request.",
)
@click.pass_obj
def serve(
    runtime: Runtime, host: str, port: int, webhook_allow: str, access_log: bool
) -> None:  # fmt: skip
    """The web process: the merchant's HTTP API under /v1 (docs at /v1/docs, keys from
    `billing api-keys create`), POST /portone/webhook (PortOne's notice_url), GET /healthz,
    GET /readyz and GET /metrics (Prometheus); with BILLING_OPS_AUTH=user:password, the
    operator console under /ops.

    Starts while the database cannot be reached (GET /readyz answers 503 until it can); a
    wrong BILLING_DATABASE_URL, or no PortOne to verify notices with, stops it at once.

    Behind a proxy, the client address comes from X-Forwarded-For only when the proxy's
    address is in FORWARDED_ALLOW_IPS (default 127.0.0.1).
    """
    import uvicorn

    from billing.web import create_app

    settings = runtime.settings
    preflight.require(settings, preflight.Role.WEB)
    configure(level=settings.log_level, secrets=settings.log_secrets)
    config = WebConfig(webhook_allow=parse_allowlist(webhook_allow))
    web = create_app(settings, config)
    listener = listen(host, port)
    click.echo(f"billing serve: listening on {address(listener)}")
    server = uvicorn.Server(
        uvicorn.Config(web, log_config=None, access_log=access_log, server_header=False,
                       proxy_headers=True, timeout_graceful_shutdown=10, lifespan="on")
    )  # fmt: skip
    _exit_quietly_on_signals()
    server.run(sockets=[listener])


def _exit_quietly_on_signals() -> None:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again with the
    handlers it found: these make that a clean exit 0 instead of a death by signal."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
