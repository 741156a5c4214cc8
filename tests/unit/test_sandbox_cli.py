"""``billing sandbox``: prints where it listens, serves, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request

import httpx
import pytest

RUN = "from billing.cli.sandbox import sandbox; sandbox(prog_name='billing sandbox')"


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_a_signal(stop_with: signal.Signals) -> None:
    process = start("--port", "0", "--imp-key", "k", "--imp-secret", "s", "--latency-ms", "1")
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        settings = dict(part.split("=", 1) for part in line.split())
        assert settings["BILLING_PORTONE_IMP_KEY"] == "k"
        assert settings["BILLING_PORTONE_IMP_SECRET"] == "s"
        url = settings["BILLING_PORTONE_URL"]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/__sandbox__/stats", timeout=5) as answer:
            assert answer.status == 200
        process.send_signal(stop_with)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_a_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start("--port", str(port))
        out, err = process.communicate(timeout=20)
    assert process.returncode != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"127.0.0.1:{port}" in err


def charge_unknown_customer(*args: str) -> dict[str, object]:
    """Start ``billing sandbox *args`` and charge a customer_uid nobody registered."""
    process = start("--port", "0", *args)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        url = dict(part.split("=", 1) for part in line.split())["BILLING_PORTONE_URL"]
        with httpx.Client(base_url=url, timeout=5) as client:
            credentials = {"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}
            token = client.post("/users/getToken", json=credentials).json()["response"]
            order = {"customer_uid": "nobody", "merchant_uid": "m1", "amount": 9900, "name": "월간"}
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            answer = client.post("/subscribe/payments/again", json=order, headers=headers)
            assert answer.status_code == 200
            body: dict[str, object] = answer.json()
            return body
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_by_default_an_unknown_customer_is_refused_as_portone_refuses_it() -> None:
    body = charge_unknown_customer()
    assert body["code"] == -1 and body["response"] is None
    assert "등록되지 않은 구매자입니다" in str(body["message"])


def test_auto_register_charges_an_unknown_customer_on_a_test_card() -> None:
    body = charge_unknown_customer("--auto-register")
    assert body["code"] == 0
    payment = body["response"]
    assert isinstance(payment, dict) and payment["status"] == "paid"
    assert payment["customer_uid"] == "nobody"


def test_help_names_the_auto_register_option() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN, "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "--auto-register" in done.stdout and "--no-auto-register" not in done.stdout
