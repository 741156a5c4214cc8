"""The product's processes, started the way an operator starts them, and killed at will.

Every process leads its own session, so that a SIGKILL reaches it and all its children (a
prefork pool's too), and logs to a file of its own in the run's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

from chaos.cluster import ClusterError, kill_group, kill_tree

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_URL = re.compile(rb"BILLING_PORTONE_URL=(http://[0-9.:\[\]]+)")


def product_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any BILLING_ or FLOWER_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "FLOWER_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@dataclass
class Managed:
    """One named product process: started, killed, restarted; each life logs to ``log``."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _output: IO[bytes] | None = field(default=None, repr=False)
    _offset: int = 0

    def start(self) -> Managed:
        """Start a new life; a life still running is killed first, never left behind."""
        self.kill()
        self.close_log()
        self._output = self.log.open("ab")
        self._offset = self._output.tell()
        self._output.write(f"--- {self.name} start #{self.starts + 1}\n".encode())
        self._output.flush()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def output(self) -> bytes:
        """What this life of the process has written so far."""
        with self.log.open("rb") as handle:
            handle.seek(self._offset)
            return handle.read()

    def wait_for(self, marker: bytes, timeout: float) -> bytes:
        """Wait until this life's output contains ``marker``; returns the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if marker in text:
                return text
            if not self.alive:
                break
            time.sleep(0.05)
        tail = self.output()[-2000:].decode(errors="replace")
        raise ClusterError(f"{self.name} did not print {marker!r} in {timeout:g} s:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the process and its children: no shutdown, no ack, no cleanup."""
        kill_tree(self.process)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
            self.kill()
        self.close_log()

    def close_log(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


def sandbox(env: dict[str, str], log: Path, hang_seconds: float, seed: int) -> Managed:
    options = ["--port", "0", "--hang-seconds", f"{hang_seconds:g}", "--seed", str(seed)]
    command = [sys.executable, "-m", "billing", "sandbox", *options, "--auto-register"]
    return Managed("sandbox", command, product_env(env), log)


def sandbox_url(process: Managed, timeout: float = 60.0) -> str:
    """The URL the sandbox printed on start (it picked a free port)."""
    match = SANDBOX_URL.search(process.wait_for(b"BILLING_PORTONE_URL=", timeout))
    if match is None:
        raise ClusterError("the sandbox printed no URL")
    return match.group(1).decode()


def scheduler(index: int, env: dict[str, str], log: Path, interval: float) -> Managed:
    command = [sys.executable, "-m", "billing", "scheduler", "--interval", f"{interval:g}"]
    return Managed(f"scheduler-{index}", command, product_env(env), log)


def worker(index: int, env: dict[str, str], log: Path, concurrency: int) -> Managed:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-c",
        str(concurrency),
        "-n",
        f"chaos{index}-{os.getpid()}@%h",
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
    ]
    return Managed(f"worker-{index}", command, product_env(env), log)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_termination() -> None:
    """SIGTERM and SIGHUP interrupt like Ctrl-C, so that a harness's ``finally`` stops every
    process it started (its PostgreSQL cluster, Redis, the sandbox, workers). Ctrl-C itself
    is taken even when the harness inherited it ignored (a shell starts background jobs with
    SIGINT ignored, and Python then leaves it so): it would run to the end instead."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def ignore_termination() -> None:
    """During cleanup: a second Ctrl-C or SIGTERM must not stop it half-way."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def exit_with(code: int) -> NoReturn:
    """Leave with exactly ``code`` once a harness's ``main`` has returned (its cleanup is done).

    CPython kills itself with SIGINT at exit whenever it believes a KeyboardInterrupt went
    unhandled; CI once saw an interrupted chaos run that had caught it, printed "interrupted"
    and cleaned up, die by SIGINT (-2) instead of exiting 130, with no traceback. The status
    of an interrupted run is the harness's to decide, so it skips the interpreter's shutdown
    (nothing is left to shut down: every process and thread it started has been stopped)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
