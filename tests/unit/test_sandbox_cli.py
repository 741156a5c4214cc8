"""``billing sandbox``: prints where it listens, serves, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request

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
