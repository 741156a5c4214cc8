"""The deployment files say what the README says: Flower never starts open."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip


def test_the_procfile_runs_every_process() -> None:
    assert set(procfile()) == {"scheduler", "worker", "web", "flower"}


def test_procfile_flower_refuses_to_start_without_basic_auth() -> None:
    done = run_shell(procfile()["flower"])
    assert done.returncode != 0
    assert "FLOWER_BASIC_AUTH=user:password is required" in done.stderr
    assert "FLOWER_BASIC_AUTH" not in procfile()["flower"].split("exec", 1)[1]  # not on argv


def test_compose_flower_refuses_to_start_without_basic_auth() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) >= {
        "postgres",
        "redis",
        "migrate",
        "scheduler",
        "worker",
        "web",
        "flower",
    }
    shell, flag, script = compose["services"]["flower"]["command"]
    done = run_shell(script.replace("$$", "$"))
    assert (shell, flag, done.returncode) == ("sh", "-c", 1)
    assert "FLOWER_BASIC_AUTH=user:password is required" in done.stderr
    assert compose["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    redis_command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_command and "noeviction" in redis_command
