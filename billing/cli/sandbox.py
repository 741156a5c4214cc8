"""``billing sandbox``: serve the bundled PortOne V1 sandbox until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from billing.cli.params import host_option, port_option, whole
from billing.sandbox import SandboxConfig, SandboxError, SandboxServer


@click.command()
@host_option("Address to listen on.")
@port_option(8089, "Port to listen on (0: any free port).")
@click.option("--imp-key", default="sandbox_key", show_default=True, help="Accepted imp_key.")
@click.option(
    "--imp-secret", default="sandbox_secret", show_default=True, help="Accepted imp_secret."
)
@click.option(
    "--token-ttl",
    default=1800,
    show_default=True,
    type=whole(1),
    help="Seconds an access token lives.",
)
@click.option(
    "--auto-register",
    is_flag=True,
    help="Issue a test card's billing key to any customer_uid on first use (for demos and "
    "benchmarks). Without it, as at PortOne, only registered customer_uids can be charged.",
)
@click.option(
    "--hang-seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long commit_then_timeout holds a connection.",
)
@click.option(
    "--latency-ms",
    default=0,
    show_default=True,
    type=whole(0),
    help="Milliseconds added to every PortOne call.",
)
@click.option(
    "--notice-url", default=None, help="Webhook receiver for paid and cancelled payments."
)
@click.option(
    "--notice-retries",
    default=0,
    show_default=True,
    type=whole(0, 4),
    help="Send every notice again this many times, a minute apart (PortOne: up to 4).",
)
@click.option("--seed", default=None, type=whole(), help="Seed of the fault dice and imp_uids.")
@click.option("--verbose", is_flag=True, help="Log every request line to stderr.")
def sandbox(
    host: str,
    port: int,
    imp_key: str,
    imp_secret: str,
    token_ttl: int,
    auto_register: bool,
    hang_seconds: float,
    latency_ms: int,
    notice_url: str | None,
    notice_retries: int,
    seed: int | None,
    verbose: bool,
) -> None:
    """Serve the bundled PortOne V1 sandbox (script it under /__sandbox__/)."""
    config = SandboxConfig(
        host=host,
        port=port,
        imp_key=imp_key,
        imp_secret=imp_secret,
        token_ttl=token_ttl,
        auto_register=auto_register,
        hang_seconds=hang_seconds,
        seed=seed,
        notice_url=notice_url,
        notice_retries=notice_retries,
        latency_ms=latency_ms,
        verbose=verbose,
    )
    server = SandboxServer(config)
    try:
        server.start()
    except SandboxError as exc:
        raise click.ClickException(exc.message) from exc
    stopped = _stop_on_signals()  # before the line that tells a caller it may signal us
    click.echo(
        f"BILLING_PORTONE_URL={server.url} BILLING_PORTONE_IMP_KEY={imp_key} "
        f"BILLING_PORTONE_IMP_SECRET={imp_secret}"
    )
    while not stopped.wait(0.5):
        pass
    server.stop()


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (the process then stops cleanly, exit 0)."""
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    return stopped
