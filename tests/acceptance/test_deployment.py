"""The deployment files say what the README says: Flower never starts open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.outage import spare_port
from tests.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    return subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_procfile_runs_every_process() -> None:
    assert set(procfile()) == {"scheduler", "worker", "web", "flower"}


def test_procfile_flower_refuses_to_start_without_basic_auth() -> None:
    done = run_shell(procfile()["flower"])
    assert done.returncode != 0
    assert "FLOWER_BASIC_AUTH=user:password is required" in done.stderr
    assert "FLOWER_BASIC_AUTH" not in procfile()["flower"].split("exec", 1)[1]  # not on argv


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_compose_runs_every_process() -> None:
    assert set(compose()["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "scheduler",
        "worker",
        "web",
        "flower",
    }


def test_compose_flower_refuses_to_start_without_basic_auth(redis_url: str) -> None:
    """The compose command itself, run here as the container would (Docker is not needed)."""
    command = compose()["services"]["flower"]["command"]
    assert command[:4] == ["celery", "-A", "workers", "flower"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "BILLING_"))}
    done = subprocess.run(
        [sys.executable, "-m", *command, "--port=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "BILLING_BROKER_URL": redis_url},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("billing: error: FLOWER_BASIC_AUTH: Flower never starts open")
    )


def published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def test_compose_publishes_nothing_on_every_interface() -> None:
    services = compose()["services"]
    assert published(services["postgres"]) == published(services["redis"]) == []
    assert published(services["web"]) == ["127.0.0.1:8000:8000"]
    assert published(services["flower"]) == ["127.0.0.1:5555:5555"]
    assert "--address=0.0.0.0" in services["flower"]["command"]  # inside its container only


def test_compose_takes_every_password_from_the_environment() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    services = compose()["services"]
    assert "billing:billing@" not in text and "POSTGRES_PASSWORD: billing" not in text
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == (
        "${BILLING_DB_PASSWORD:?set BILLING_DB_PASSWORD}"
    )
    env = compose()["x-billing"]["environment"]
    assert "${BILLING_DB_PASSWORD:?" in env["BILLING_DATABASE_URL"]
    assert env["BILLING_BROKER_URL"].startswith("redis://:${BILLING_REDIS_PASSWORD:?")


def test_compose_redis_requires_its_password_and_every_client_sends_it(tmp_path: Path) -> None:
    """The compose Redis command, run here on a spare port: without the password, NOAUTH;
    with it, PONG; and the password is not on any command line."""
    redis = compose()["services"]["redis"]
    shell, flag, script = redis["command"]
    script = script.replace("$$", "$") + f" --port {spare_port()} --dir {tmp_path}"
    port = script.split("--port ")[1].split()[0]
    env = {**os.environ, "REDIS_PASSWORD": "compose-test-pw"}
    server = subprocess.Popen(
        [shell, flag, script], env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(lambda: _ping(port, "compose-test-pw") == "PONG", 20, "redis to answer")
        assert "NOAUTH" in _ping(port, None)
        assert "compose-test-pw" not in Path(f"/proc/{server.pid}/cmdline").read_text()
        assert "--appendonly yes" in script and "noeviction" in script
        assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # its own session: the shell and redis-server
        server.wait(10)
    clients = ("scheduler", "worker", "web", "flower")
    for name in clients:  # each takes the broker URL (with its password) from x-billing
        assert compose()["services"][name]["environment"]["BILLING_BROKER_URL"].startswith(
            "redis://:${BILLING_REDIS_PASSWORD"
        ), name


def _ping(port: str, password: str | None) -> str:
    env = {**os.environ, **({"REDISCLI_AUTH": password} if password else {})}
    done = subprocess.run(
        ["redis-cli", "-p", port, "ping"],
        env=env,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


def test_the_base_image_is_pinned_by_digest() -> None:
    first = (ROOT / "Dockerfile").read_text().split("\nFROM ", 1)[-1].split()[0]
    assert first.startswith("python:3.11-slim@sha256:") and len(first.split(":")[-1]) == 64
