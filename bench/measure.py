"""Measuring without disturbing: poll counts from the database, read RSS from /proc."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError


@dataclass
class Progress:
    """(wall time, charges claimed, charges settled) sampled every ``step`` seconds."""

    engine: Engine
    target: int
    claims_only: bool = False
    step: float = 0.1
    on_first_claim: Callable[[], None] | None = None  # called once, at the first claim seen
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    backend_pid: int = 0  # the sampling connection's PostgreSQL backend (its CPU is ours)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        query = text(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('paid', 'failed')) FROM charges"
        )
        try:
            with self.engine.connect() as connection:
                self.backend_pid = int(connection.execute(text("SELECT pg_backend_pid()")).one()[0])
                while not self._stop.is_set():
                    claimed, settled = connection.execute(query).one()
                    connection.commit()
                    self.samples.append((time.monotonic(), int(claimed), int(settled)))
                    if claimed and self.on_first_claim is not None:
                        self.on_first_claim()
                        self.on_first_claim = None
                    if (claimed if self.claims_only else settled) >= self.target:
                        return
                    self._stop.wait(self.step)
        except OperationalError:  # the database went away (an interrupted run): stop sampling
            return

    def stop(self) -> None:
        self._stop.set()

    def first(self, predicate: Callable[[tuple[float, int, int]], bool]) -> float | None:
        return next((sample[0] for sample in self.samples if predicate(sample)), None)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(call: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpus = sum(1 for line in cpuinfo if line.startswith("processor"))
    names = (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return (
        f"{cpus} cores ({next(names, 'unknown CPU')}), {memory} GiB; PostgreSQL, Redis, the "
        "sandbox and the product all on this machine"
    )
