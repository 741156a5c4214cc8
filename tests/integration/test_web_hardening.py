"""The web process against a hostile network (issue 14): who gets the figures and readiness
details, forwarded headers, webhook amplification, slow and aborted clients.

Uses the ``world`` of ``test_web`` (database, sandbox, web process)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from billing.config import load_settings
from billing.services.api_keys import create_key
from billing.services.webhook_guard import WebhookLimits
from billing.web import WebConfig, create_app
from billing.web.listener import listen
from tests.integration import test_web as web_tests
from tests.integration.test_web import WEBHOOK, WebServer, World, start_serve

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


def serve_outside(
    env: dict[str, str], environ: dict[str, str] | None = None, config: WebConfig | None = None
) -> WebServer:
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
        assert detailed == {
            "status": "ready",
            "database": "ok",
            "broker": "ok",
            "configuration": "ok",
        }
    finally:
        server.stop()


# -- forwarded headers (item 6) --------------------------------------------------------------


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)
    return err


def test_billing_serve_believes_forwarded_headers_from_nobody_by_default(world: World) -> None:
    env = {**world.env, "BILLING_WEBHOOK_ALLOW": "203.0.113.0/24"}
    webhook = {"imp_uid": "imps_000000000001", "merchant_uid": "m"}
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    process, url = start_serve(env)
    try:  # a local process claims to be a proxy forwarding an allowed source
        assert httpx.post(url + WEBHOOK, json=webhook, headers=spoofed).status_code == 403
    finally:
        stop(process)
    process, url = start_serve({**env, "FORWARDED_ALLOW_IPS": "127.0.0.1"})
    try:  # configured: this proxy is believed
        answer = httpx.post(url + WEBHOOK, json=webhook, headers=spoofed)
        assert (answer.status_code, answer.json()["result"]) == (200, "forged")
    finally:
        stop(process)


# -- slow and aborted clients (item 9) -------------------------------------------------------


def raw_exchange(url: str, request: bytes, wait: float) -> tuple[bytes, float]:
    """Sends ``request`` and reads until the server closes; (what it said, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except TimeoutError:
            return answer + b"<still open>", time.monotonic() - started
    return answer, time.monotonic() - started


def test_slow_clients_are_cut_off(world: World) -> None:
    process, url = start_serve(world.env, "--header-timeout", "1", "--body-timeout", "1")
    try:
        headers = b"POST /portone/webhook HTTP/1.1\r\nHost: x\r\n"  # never finished
        answer, seconds = raw_exchange(url, headers, wait=4)
        assert answer.startswith(b"HTTP/1.1 408") and seconds < 3, (answer, seconds)
        body = b"POST /portone/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        answer, seconds = raw_exchange(url, body, wait=4)
        assert answer.startswith(b"HTTP/1.1 408") and seconds < 3, (answer, seconds)
        idle, seconds = raw_exchange(url, b"", wait=4)  # connects, says nothing
        assert idle.startswith(b"HTTP/1.1 408") and seconds < 3, (idle, seconds)
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # others are served
    finally:
        err = stop(process)
    assert '"action": "client_too_slow"' in err


def test_an_aborted_upload_is_an_info_line(world: World) -> None:
    with world.app.transaction() as session:
        key = create_key(session, "uploader", False, datetime.now(UTC)).key
    process, url = start_serve(world.env)
    try:
        host, port = url.removeprefix("http://").split(":")
        for start in (b"POST /portone/webhook", b"PUT /v1/customers/c1"):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                head = start + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                auth = b"Authorization: Bearer " + key.encode() + b"\r\n"
                sock.sendall(head + auth + b'Content-Type: application/json\r\n\r\n{"name": ')
                time.sleep(0.3)
        time.sleep(0.5)
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        err = stop(process)
    assert "Traceback" not in err and '"level": "error"' not in err, err
    assert '"action": "client_disconnected"' in err, err


# -- webhook amplification (items 4 and 5) ---------------------------------------------------

REFETCH = "GET /payments/{imp_uid}"


def refetches(world: World) -> int:
    return world.sandbox.stats()["requests"].get(REFETCH, 0)


def forge(server: WebServer, n: int) -> httpx.Response:
    return httpx.post(server.url + WEBHOOK, json={"imp_uid": f"imps_{n:012d}", "merchant_uid": "m"})


def test_an_imp_uid_portone_does_not_know_is_asked_about_once(world: World) -> None:
    before = refetches(world)
    for _ in range(30):
        forged = world.post_webhook(imp_uid="imps_404404404404", merchant_uid="sub-1-1-1")
        assert (forged.status_code, forged.json()["result"]) == (200, "forged")
    assert refetches(world) - before == 1


def test_a_flood_of_forged_webhooks_is_bounded(world: World) -> None:
    limits = WebhookLimits(per_source=1000, refetches=5, unknown_seconds=60)
    server = web_tests.serve_app(world.env, WebConfig(webhook_limits=limits))
    try:
        before = refetches(world)
        started = time.monotonic()
        answers = Counter(forge(server, n).status_code for n in range(60))
        elapsed = time.monotonic() - started
        assert answers[429] > 0 and set(answers) == {200, 429}, answers
        assert refetches(world) - before <= 10 + 5 * elapsed + 1  # the burst, then 5 a second
    finally:
        server.stop()


def test_one_source_is_limited(world: World) -> None:
    limits = WebhookLimits(per_source=2, refetches=1000, unknown_seconds=60)
    server = web_tests.serve_app(world.env, WebConfig(webhook_limits=limits))
    try:
        statuses = [forge(server, n).status_code for n in range(20)]
        assert statuses[:4] == [200] * 4 and statuses.count(429) >= 14, statuses
    finally:
        server.stop()


def test_a_webhook_repeated_is_recorded_once(world: World) -> None:
    charge = world.unknown_charge("cust-repeat")
    imp_uid = world.pay_at_sandbox(charge, amount=100, notify=False)  # PortOne: another amount
    # Not a test of the answer's deadline: a loaded machine may take longer than the 0.5 s
    # after which the answer is `deferred` (the verification then goes on all the same).
    server = web_tests.serve_app(world.env, WebConfig(answer_within=30))
    fields = {"imp_uid": imp_uid, "merchant_uid": charge.merchant_uid, "status": "paid"}
    try:
        for _ in range(20):
            again = world.http.post(server.url + web_tests.WEBHOOK, json=fields)
            assert (again.status_code, again.json()["result"]) == (200, "mismatch")
    finally:
        server.stop()
    assert len(world.events(charge.id, "portone_notice")) == 1


def test_a_redelivered_webhook_of_a_paid_charge_costs_no_portone_call(world: World) -> None:
    charge = world.unknown_charge("cust-paid-twice")
    imp_uid = world.pay_at_sandbox(charge, notify=False)
    first = world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid, status="paid")
    assert first.json()["result"] == "settled"
    before = refetches(world)
    for _ in range(10):
        again = world.post_webhook(imp_uid=imp_uid, merchant_uid=charge.merchant_uid, status="paid")
        assert again.json()["result"] == "already_paid"
    assert refetches(world) == before


def test_webhooks_past_the_verification_backlog_are_429(world: World) -> None:
    world.sandbox.set_latency(ms=1500)  # every re-fetch takes 1.5 s
    config = WebConfig(verifiers=1, backlog=2, answer_within=0.1)
    server = web_tests.serve_app(world.env, config)
    try:
        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(pool.map(lambda n: forge(server, n).status_code, range(6)))
        assert statuses.count(200) == 2 and statuses.count(429) == 4, statuses  # 2 deferred
    finally:
        world.sandbox.set_latency(ms=0)
        server.stop()
