"""Real processes for end-to-end tests: a Celery worker, and helpers to wait on the database."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded before any fork


def die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so no worker outlives its run.
    Only a prctl system call runs between fork and exec."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def product_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "FLOWER_"))}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


class WorkerProcess:
    """``celery -A workers worker`` in a subprocess, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 4) -> None:
        self.env = env
        self.log = log
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        self._output = self.log.open("ab")
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-c",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "-n",
            f"test-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=product_env(self.env),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (one system call, see above)
        )
        wait_for(lambda: b" ready." in self.log.read_bytes() or self.exited(), 60, "worker ready")
        assert not self.exited(), self.log.read_text()[-3000:]
        return self

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole worker at once: no shutdown, no ack, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._output is not None:
            self._output.close()


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
