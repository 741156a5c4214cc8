"""The chaos harness (``python -m chaos``) run small enough for CI, and a reproduction of what
the chaos run found about Redis restarts.

The full run (1,000 subscriptions, 3 months, every kind of kill) is not part of pytest: it is
``make chaos`` / ``python -m chaos`` (``--short`` in CI). Set CHAOS_FULL=1 to run it here too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.sandbox import SandboxServer
from chaos.cluster import Redis, descendants, process_table
from tests.integration.conftest import Product
from tests.processes import ROOT, product_env, wait_for

pytestmark = pytest.mark.timeout(600)


class ChaosProcess:
    """``python -m chaos`` in a subprocess, remembering every process it started."""

    def __init__(self, tmp_path: Path, *args: str, sigint_ignored: bool = False) -> None:
        self.out, self.err = tmp_path / "chaos.out", tmp_path / "chaos.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chaos", *args],
                cwd=ROOT,
                env=product_env({}),
                stdout=out,
                stderr=err,
                preexec_fn=_ignore_sigint if sigint_ignored else None,  # noqa: PLW1509
            )
        self.seen: dict[int, bytes] = {}  # pid -> command line

    def watch(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"chaos still running after {timeout:g} s")
            for pid in descendants(self.process.pid):
                self.seen.setdefault(pid, cmdline(pid))
            time.sleep(0.2)
        return self.process.returncode

    def report(self) -> str:
        return self.out.read_text() + self.err.read_text()[-4000:]

    def leftovers(self) -> list[str]:
        """The run's directory, and the processes it started, if any is still there."""
        found = [
            line.split(" in ", 1)[1]
            for line in self.err.read_text().splitlines()
            if "booting in " in line and Path(line.split(" in ", 1)[1]).exists()
        ]
        alive = {info.pid for info in process_table() if info.alive}
        for pid, command in self.seen.items():
            if pid in alive and command and cmdline(pid) == command:
                found.append(command.replace(b"\0", b" ").decode(errors="replace"))
        return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_small_chaos_run_keeps_every_money_invariant_and_cleans_up(tmp_path: Path) -> None:
    run = ChaosProcess(
        tmp_path,
        "--subscriptions",
        "60",
        "--months",
        "1",
        "--kills",
        "1",
        "--no-postgres-restart",
        "--seed",
        "3",
    )
    code = run.watch(400)
    out, report = run.out.read_text(), run.report()
    assert code == 0, report
    assert "chaos run: 60 subscriptions, 1 months" in out, report
    assert "\nanomalies: 0 (" in out, report
    assert "kills (SIGKILL): workers 1, schedulers 1, redis 1, postgres 0" in out, report
    assert "faults injected: 0 " not in out, report
    assert len(run.seen) >= 6  # postgres, redis, sandbox, 2 schedulers, 2 workers at least
    assert run.leftovers() == []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_an_interrupted_chaos_run_stops_everything_it_started(
    tmp_path: Path, inherited: str
) -> None:
    """Ctrl-C stops it, also when started where SIGINT is ignored (a shell's background job:
    the whole suite once ran the chaos run to its end instead)."""
    run = ChaosProcess(
        tmp_path, "--subscriptions", "30", "--months", "1", sigint_ignored=inherited == "ignored"
    )
    wait_for(lambda: "product processes up" in run.err.read_text(), 120, "the product")
    for pid in descendants(run.process.pid):
        run.seen.setdefault(pid, cmdline(pid))
    run.process.send_signal(signal.SIGINT)
    code = run.watch(120)
    left = run.leftovers()
    assert (code, left) == (130, []), run.report()


@pytest.mark.skipif(os.environ.get("CHAOS_FULL") != "1", reason="the full run: make chaos")
def test_the_full_chaos_run(tmp_path: Path) -> None:
    run = ChaosProcess(tmp_path)
    assert run.watch(3600) == 0, run.report()
    assert run.leftovers() == []


# -- what the chaos run found ------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis server of this test's own, which it may kill (never the machine's)."""
    server = Redis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(db_url: str, sandbox: SandboxServer, private_redis: Redis) -> dict[str, str]:
    return {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": private_redis.url,
        "BILLING_PORTONE_URL": sandbox.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "5",
        "BILLING_RECONCILE_AFTER": "10",
    }


def test_a_worker_survives_a_redis_restart_with_charges_in_flight(
    product: Product, private_redis: Redis
) -> None:
    for n in range(2):  # fewer than the worker's 4 threads: it keeps polling (BRPOP) for more
        product.subscribe(f"cust-redis-{n}")
    product.sandbox.set_latency(ms=4000)
    product.scheduler.run_pass()
    wait_for(
        lambda: sum(c.status == "processing" for c in product.charges()) == 2,
        30,
        "charges in flight",
    )
    private_redis.crash()
    time.sleep(1.5)  # down long enough for the worker to notice
    private_redis.start()
    time.sleep(8)
    log = product.worker.log.read_text()
    assert not product.worker.exited(), log[-3000:]
    assert "Unrecoverable error" not in log
