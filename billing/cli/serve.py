"""``billing serve``: the web process (the HTTP API, PortOne notices, health, readiness,
metrics)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import click
from click.decorators import FC

from billing import preflight
from billing.cli.params import host_option, port_option
from billing.cli.runtime import Runtime
from billing.logs import configure
from billing.services.webhook_guard import WebhookLimits
from billing.web.config import (
    ALLOW_VARIABLE,
    FORWARDED_VARIABLE,
    ServerLimits,
    WebConfig,
    parse_allowlist,
)
from billing.web.listener import address, listen


def _at_least_a_tenth(name: str, default: float, help: str) -> Callable[[FC], FC]:
    """A limit in seconds or per second, 0.1 at the least, its default shown."""
    return click.option(
        name, type=click.FloatRange(min=0.1), default=default, show_default=True, help=help
    )


@click.command()
@host_option("Address to listen on (0.0.0.0 for every interface).")
@port_option(8000, "Port to listen on (0: any free port, printed at start).")
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
    "--forwarded-allow-ips",
    envvar=FORWARDED_VARIABLE,
    default="",
    show_envvar=True,
    help="Believe X-Forwarded-For and X-Forwarded-Proto only from these proxy addresses "
    "(comma-separated, '*' for any). Default: from nobody.",
)
@_at_least_a_tenth(
    "--header-timeout",
    ServerLimits.header_seconds,
    "Seconds a client has to send its request headers (then 408, connection closed).",
)
@_at_least_a_tenth(
    "--body-timeout",
    ServerLimits.body_seconds,
    "Seconds a client has to send its request body after the headers.",
)
@_at_least_a_tenth(
    "--notice-rate",
    WebhookLimits.per_source,
    "PortOne notices a second one source address may send (twice that at once); past it: 429.",
)
@_at_least_a_tenth(
    "--refetch-rate",
    WebhookLimits.refetches,
    "Payments this process re-fetches from PortOne a second to verify notices (twice "
    "that at once); past it: 429 (PortOne sends the notice again).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="One log line per request.",
)
@click.pass_obj
def serve(
    runtime: Runtime,
    host: str,
    port: int,
    webhook_allow: str,
    forwarded_allow_ips: str,
    header_timeout: float,
    body_timeout: float,
    notice_rate: float,
    refetch_rate: float,
    access_log: bool,
) -> None:
    """The web process: the merchant's HTTP API under /v1 (docs at /v1/docs, keys from
    `billing api-keys create`), POST /portone/webhook (PortOne's notice_url), GET /healthz,
    GET /readyz and GET /metrics (Prometheus); with BILLING_OPS_AUTH=user:password, the
    operator console under /ops.

    Starts while the database cannot be reached (GET /readyz answers 503 until it can); a
    wrong BILLING_DATABASE_URL, or no PortOne to verify notices with, stops it at once.

    Behind a proxy, the client address comes from X-Forwarded-For only when the proxy's
    address is in FORWARDED_ALLOW_IPS (default: nobody's). /metrics and the details of
    /readyz: BILLING_METRICS_TOKEN's bearer, or loopback clients when it is unset.
    """
    import uvicorn

    from billing.web import create_app
    from billing.web.server import server_config

    settings = runtime.settings
    preflight.require(settings, preflight.Role.WEB)
    configure(level=settings.log_level, secrets=settings.log_secrets)
    webhook_limits = WebhookLimits(per_source=notice_rate, refetches=refetch_rate)
    config = WebConfig(webhook_allow=parse_allowlist(webhook_allow), webhook_limits=webhook_limits)
    web = create_app(settings, config)
    listener = listen(host, port)
    click.echo(f"billing serve: listening on {address(listener)}")
    limits = ServerLimits(header_seconds=header_timeout, body_seconds=body_timeout)
    server = uvicorn.Server(
        server_config(
            web, forwarded_allow_ips=forwarded_allow_ips, limits=limits, access_log=access_log
        )
    )
    _exit_quietly_on_signals()
    server.run(sockets=[listener])


def _exit_quietly_on_signals() -> None:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again with the
    handlers it found: these make that a clean exit 0 instead of a death by signal."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
