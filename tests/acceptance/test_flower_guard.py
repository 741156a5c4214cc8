"""Flower started from this app, however it is started, never starts open (issue 14, item
1), listens on 127.0.0.1 unless told otherwise (issue 18, item 7) and logs the product's JSON
lines, each with an action (item 8): the real ``celery -A workers flower`` in a subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.outage import spare_port
from tests.processes import ROOT, product_env, wait_for


def flower(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", *options],
        cwd=ROOT,
        env=product_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "options", "error"),
    [
        ({}, (), "FLOWER_BASIC_AUTH: Flower never starts open"),
        ({"FLOWER_BASIC_AUTH": ":"}, (), "FLOWER_BASIC_AUTH: must be user:password"),
        ({"FLOWER_BASIC_AUTH": "ops:"}, (), "FLOWER_BASIC_AUTH: must be user:password"),
        ({"FLOWER_BASIC_AUTH": ":pw"}, (), "FLOWER_BASIC_AUTH: must be user:password"),
        ({}, ("--basic-auth=:",), "FLOWER_BASIC_AUTH: must be user:password"),
        ({"FLOWER_AUTH": ".*@merchant.example"}, (), "FLOWER_BASIC_AUTH: Flower never starts"),
    ],
)
def test_flower_refuses_to_start_open(
    redis_url: str, env: dict[str, str], options: tuple[str, ...], error: str
) -> None:
    done = flower({"BILLING_BROKER_URL": redis_url, **env}, f"--port={spare_port()}", *options)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"billing: error: {error}")


def outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture
def running_flower(redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, log = spare_port(), tmp_path / "flower.log"
    env = {"BILLING_BROKER_URL": redis_url, "FLOWER_BASIC_AUTH": "ops:flower-pw"}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}"],
        cwd=ROOT,
        env=product_env(env),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(port) or process.poll() is not None, 60, "Flower to answer")
        assert process.poll() is None, log.read_text()
        yield port, log
    finally:
        process.terminate()
        process.wait(20)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_flower_binds_loopback_asks_for_a_login_and_logs_json(
    running_flower: tuple[int, Path],
) -> None:
    port, log = running_flower
    assert httpx.get(f"http://127.0.0.1:{port}/workers", timeout=5).status_code == 401
    login = httpx.get(f"http://127.0.0.1:{port}/workers", auth=("ops", "flower-pw"), timeout=10)
    assert login.status_code == 200
    outside = outside_address()
    if outside is not None:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{outside}:{port}/healthcheck", timeout=2)
    time.sleep(0.5)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    documents = [json.loads(line) for line in lines if line.startswith("{")]
    assert documents, log.read_text()
    assert not [line for line in lines if line.startswith("[")], lines  # Tornado's "[I 2026..."
    assert all(document["action"] for document in documents), documents
    assert any(f"127.0.0.1:{port}" in document["message"] for document in documents)
    assert "flower-pw" not in log.read_text()


def test_flower_refuses_a_bad_setting_in_one_line(redis_url: str) -> None:
    env = {
        "BILLING_BROKER_URL": redis_url,
        "FLOWER_BASIC_AUTH": "ops:pw",
        "BILLING_PORTONE_TIMEOUT": "abc",
    }
    done = flower(env, f"--port={spare_port()}")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("billing: error: BILLING_PORTONE_TIMEOUT: Input should be a valid number")
    )
    assert "Traceback" not in done.stderr
