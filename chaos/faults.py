"""What goes wrong, and when: the sandbox's injected faults, and the kills and restarts.

``SandboxAdmin`` turns the sandbox's control endpoints (``/__sandbox__/...``). ``Mayhem`` is
the plan of process faults, drawn from the run's seed before anything starts: at which steps
of the simulated calendar a worker or a scheduler is SIGKILLed, and at which ones Redis and
PostgreSQL are killed and started again. The moment inside a step is random too.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_FAULTS: dict[str, float] = {
    "error_500": 0.05,
    "commit_then_timeout": 0.05,
    "commit_then_reset": 0.02,
    "decline": 0.10,
    "token_expired": 0.01,
    "already_paid": 0.015,  # PortOne paid it and answered "already paid"
    "net_cancel": 0.015,  # approved, answer lost, cancelled by the PG: no money moved
    "paid_then_refunded": 0.01,  # paid, answer lost, refunded in PortOne's console
}


class SandboxAdmin:
    """A client of the sandbox's admin API (no token needed)."""

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=60.0)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: Mapping[str, Any]) -> None:
        answer = self._http.post(f"/__sandbox__/{path}", json=dict(body))
        answer.raise_for_status()

    def set_faults(self, faults: Mapping[str, float], seed: int | None) -> None:
        self._post("faults", {"faults": dict(faults), "seed": seed})

    def script(self, customer_uid: str, behaviors: Sequence[str]) -> None:
        self._post("script", {"customer_uid": customer_uid, "behaviors": list(behaviors)})

    def default(self, customer_uid: str, behavior: str) -> None:
        self._post("default", {"customer_uid": customer_uid, "behavior": behavior})

    def ledger(self) -> list[dict[str, Any]]:
        answer = self._http.get("/__sandbox__/ledger")
        answer.raise_for_status()
        payments: list[dict[str, Any]] = answer.json()["payments"]
        return payments

    def stats(self) -> dict[str, dict[str, int]]:
        answer = self._http.get("/__sandbox__/stats")
        answer.raise_for_status()
        stats: dict[str, dict[str, int]] = answer.json()
        return stats


@dataclass(frozen=True)
class Blow:
    """One process fault: ``what`` at step ``step``, ``delay`` seconds after the clock moved."""

    step: int
    what: str  # worker | scheduler | redis | postgres
    delay: float
    target: int = 0  # which worker or scheduler
    downtime: float = 1.0  # seconds before the victim is started again


@dataclass
class Mayhem:
    blows: list[Blow] = field(default_factory=list)
    dump_step: int | None = None  # pg_dump of the database while the product runs
    restore_step: int | None = None  # that dump restored over the database, days later
    load: Sequence[int] = ()  # charges expected to start at each step

    def at(self, step: int) -> list[Blow]:
        return [blow for blow in self.blows if blow.step == step]

    def count(self, what: str) -> int:
        return sum(1 for blow in self.blows if blow.what == what)


def plan_mayhem(
    rng: random.Random,
    load: Sequence[int],
    *,
    worker_kills: int,
    scheduler_kills: int,
    workers: int,
    schedulers: int,
    redis_restart: bool,
    postgres_restart: bool,
    restore_after: int = 0,
) -> Mayhem:
    """Draw the process faults. ``load[i]`` is how many charges step i is expected to start:
    kills prefer busy steps (they land mid-charge); Redis is restarted on the busiest step of
    the first half and PostgreSQL on the busiest of the second half."""
    steps = len(load)
    busy = [i for i in range(steps) if load[i] > 0] or list(range(steps))
    weights = [load[i] + 1 for i in busy]
    blows = [
        Blow(
            rng.choices(busy, weights)[0],
            "worker",
            rng.uniform(0.0, 2.0),
            rng.randrange(workers),
            rng.uniform(0.2, 3.0),
        )
        for _ in range(worker_kills)
    ]
    blows += [
        Blow(
            rng.choices(busy, weights)[0],
            "scheduler",
            rng.uniform(0.0, 1.0),
            rng.randrange(schedulers),
            rng.uniform(0.2, 2.0),
        )
        for _ in range(scheduler_kills)
    ]
    half = max(1, steps // 2)
    if redis_restart:
        blows.append(Blow(_busiest(load, 0, half), "redis", rng.uniform(0.2, 1.0), 0, 1.5))
    if postgres_restart:
        step = _busiest(load, half, steps) if steps > 1 else 0
        blows.append(Blow(step, "postgres", rng.uniform(0.2, 1.0), 0, 1.5))
    mayhem = Mayhem(sorted(blows, key=lambda blow: (blow.step, blow.delay)))
    if restore_after and steps > restore_after + 1:
        mayhem.dump_step = _busiest(load, 1, max(2, half - restore_after))
        mayhem.restore_step = mayhem.dump_step + restore_after
    return mayhem


def _busiest(load: Sequence[int], start: int, stop: int) -> int:
    window = range(start, max(start + 1, min(stop, len(load))))
    return max(window, key=lambda i: (load[i] if i < len(load) else 0, -i))
