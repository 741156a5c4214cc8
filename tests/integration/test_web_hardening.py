"""The web process against a hostile network (issue 14): who gets the figures and readiness
details, forwarded headers, notice amplification, slow and aborted clients.

Uses the ``world`` of ``test_web`` (database, sandbox, web process)."""

from __future__ import annotations

import socket

import httpx
import pytest

from billing.config import load_settings
from billing.web import WebConfig, create_app
from billing.web.listener import listen
from tests.integration import test_web as web_tests
from tests.integration.test_web import WebServer, World

world = web_tests.world  # the same fixture


def outside_address() -> str:
    """An address of this machine that is not loopback (the client's address when we connect
    to it), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: only a route is chosen
            host = str(probe.getsockname()[0])
        except OSError:
            host = ""
    if not host or host.startswith("127.") or host == "0.0.0.0":
        pytest.skip("this machine has no address outside loopback")
    return host


def serve_outside(env: dict[str, str], environ: dict[str, str] | None = None,
                  config: WebConfig | None = None) -> WebServer:  # fmt: skip
    web = create_app(load_settings(env), config, environ or {})
    return WebServer(listen(outside_address(), 0)).start(web)


# -- /metrics and /readyz (SPEC section 3: BILLING_METRICS_TOKEN) ----------------------------


def test_without_a_token_only_loopback_clients_get_the_figures(world: World) -> None:
    server = serve_outside(world.env)
    try:
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 403
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})  # no host:port
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    # loopback still gets everything, unless the request came through a proxy
    assert world.http.get(world.web.url + "/metrics").status_code == 200
    assert world.http.get(world.web.url + "/readyz").json()["database"] == "ok"
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    assert world.http.get(world.web.url + "/metrics", headers=proxied).status_code == 403
    assert "database" not in world.http.get(world.web.url + "/readyz", headers=proxied).json()


def test_with_a_token_only_its_bearer_gets_the_figures(world: World) -> None:
    server = serve_outside(world.env, {"BILLING_METRICS_TOKEN": "s3cret-scrape"})
    try:
        url = server.url
        assert httpx.get(url + "/metrics", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer s3cret-scrapf"}
        assert httpx.get(url + "/metrics", headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": "Bearer s3cret-scrape"}
        figures = httpx.get(url + "/metrics", headers=right, timeout=10)
        assert figures.status_code == 200 and "billing_mrr_krw" in figures.text
        assert httpx.get(url + "/readyz", timeout=10).json() == {"status": "ready"}
        detailed = httpx.get(url + "/readyz", headers=right, timeout=10).json()
        assert detailed == {"status": "ready", "database": "ok", "broker": "ok"}
    finally:
        server.stop()
