"""The running product: sandbox, schedulers and workers, and the hand that strikes them.

Strikes run in threads of their own, so that the simulated calendar keeps moving while a
worker is dead or PostgreSQL is down. A watchman restarts any process that died without
being struck, and counts it: the product is expected to survive, not to exit.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from chaos import processes
from chaos.cluster import Postgres, Redis
from chaos.faults import Blow
from chaos.processes import Managed

WATCH_EVERY = 0.5  # seconds


def last_words(member: Managed) -> str:
    """The line that tells why a process ended ("Unrecoverable error: ..."), else its last."""
    lines = [line.strip() for line in member.output().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    for marker in ("Unrecoverable error", "Error", ""):
        telling = [line for line in lines if marker in line]
        if telling:
            return telling[-1][:300]
    return "(no output)"


class Fleet:
    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *,
        workers: int,
        concurrency: int,
        schedulers: int = 2,
        scheduler_interval: float = 0.2,
        say: Callable[[str], None] = print,
    ) -> None:
        self.say = say
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        self.schedulers = [
            processes.scheduler(i, env, logs / f"scheduler-{i}.log", scheduler_interval)
            for i in range(schedulers)
        ]
        self.workers = [
            processes.worker(i, env, logs / f"worker-{i}.log", concurrency) for i in range(workers)
        ]
        self.counts: Counter[str] = Counter()
        self.exits: list[str] = []  # what the processes that died by themselves said last
        self.failures: list[str] = []  # strikes the harness could not carry out
        self._lock = threading.Lock()  # between strikes and the watchman
        self._victims = {member.name: threading.Lock() for member in self.members}
        self._down: set[str] = set()
        self._strikes: list[threading.Thread] = []
        self._stop = threading.Event()
        self._watchman: threading.Thread | None = None

    @property
    def members(self) -> list[Managed]:
        return [*self.schedulers, *self.workers]

    def start(self, ready_timeout: float = 90.0) -> None:
        for member in self.members:
            member.start()
        for worker in self.workers:
            worker.wait_for(b" ready.", ready_timeout)
        self._watchman = threading.Thread(target=self._watch, name="chaos-watchman", daemon=True)
        self._watchman.start()

    # -- strikes -----------------------------------------------------------------------------

    def strike(self, blow: Blow, postgres: Postgres, redis: Redis) -> None:
        """Carry out ``blow`` in the background: wait its delay, kill, wait, start again."""
        thread = threading.Thread(
            target=self._strike,
            args=(blow, postgres, redis),
            name=f"chaos-{blow.what}",
            daemon=True,
        )
        thread.start()
        self._strikes.append(thread)

    def _strike(self, blow: Blow, postgres: Postgres, redis: Redis) -> None:
        try:
            self._carry_out(blow, postgres, redis)
        except Exception as exc:  # reported by the run as a harness error
            self.failures.append(f"{blow.what} strike at step {blow.step}: {exc}")

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _carry_out(self, blow: Blow, postgres: Postgres, redis: Redis) -> None:
        time.sleep(blow.delay)
        if blow.what in ("worker", "scheduler"):
            group = self.workers if blow.what == "worker" else self.schedulers
            victim = group[blow.target % len(group)]
            with self._victims[victim.name]:  # two blows on one victim: one after the other
                with self._lock:
                    self._down.add(victim.name)
                victim.kill()
                self._count(f"{blow.what}_kills")
                time.sleep(blow.downtime)
                with self._lock:
                    victim.start()
                    self._down.discard(victim.name)
            self._count(f"{blow.what}_restarts")
            return
        server = redis if blow.what == "redis" else postgres
        began = time.monotonic()
        server.crash()
        self._count(f"{blow.what}_kills")
        time.sleep(blow.downtime)
        server.start()
        self._count(f"{blow.what}_restarts")
        self.say(f"{blow.what} killed (-9) and back in {time.monotonic() - began:.1f} s")

    def calm(self, timeout: float = 120.0) -> None:
        """Wait for every strike under way to be over (its victim started again)."""
        deadline = time.monotonic() + timeout
        for thread in self._strikes:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._strikes = [thread for thread in self._strikes if thread.is_alive()]

    # -- the watchman ------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            with self._lock:
                for member in self.members:
                    if member.name in self._down or member.alive:
                        continue
                    self.exits.append(
                        f"{member.name} exited {member.exit_code}: {last_words(member)}"
                    )
                    self.counts["unexpected_exits"] += 1  # under the lock already
                    member.start()

    def crashes(self) -> int:
        """Workers that gave up by themselves ("Unrecoverable error"), struck or not."""
        return sum(worker.log.read_bytes().count(b"Unrecoverable error") for worker in self.workers)

    def stop(self) -> None:
        """Kill every product process (the run is over; nothing of theirs is kept)."""
        self._stop.set()
        if self._watchman is not None:
            self._watchman.join(5)
        self.calm(30)
        for member in self.members:
            member.kill()
            member.close_log()
