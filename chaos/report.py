"""The figures of a chaos run, printed as plain text (they go into the README verbatim)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from billing import invariants
from billing.invariants import Anomaly
from chaos import checks
from chaos.checks import Tally
from chaos.options import Options

ALL_KINDS = (*invariants.KINDS, *checks.KINDS)


@dataclass
class Figures:
    options: Options
    first_day: str = ""
    last_day: str = ""
    subscriptions: Counter[str] = field(default_factory=Counter)  # by status
    cohorts: Counter[str] = field(default_factory=Counter)
    charges: Counter[str] = field(default_factory=Counter)  # by status
    sends: int = 0
    periods_attempted: int = 0
    tally: Tally = field(default_factory=Tally)
    gateway: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # sandbox stats
    fleet: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    slow_steps: int = 0
    steps: int = 0
    restores: int = 0
    step_seconds: list[float] = field(default_factory=list)  # how long each step took to drain
    ledger_repairs: int = 0  # payments `billing reconcile ledger` recorded
    ledger_reported: int = 0  # differences it could only report
    refunded_at_portone: int = 0
    operators: Counter[str] = field(default_factory=Counter)
    anomalies: list[Anomaly] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds

    @property
    def anomaly_counts(self) -> dict[str, int]:
        counts = Counter(anomaly.kind for anomaly in self.anomalies)
        return {kind: counts.get(kind, 0) for kind in ALL_KINDS}


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "none"


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    median, slow = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)]
    return f"median {median:.1f} s, 90% within {slow:.1f} s, longest {ordered[-1]:.1f} s"


def render(f: Figures) -> str:
    o = f.options
    requests = f.gateway.get("requests", {})
    payments = f.gateway.get("payments", {})
    faults = {k: v for k, v in f.gateway.get("faults", {}).items()}
    lines = [
        f"chaos run: {o.subscriptions} subscriptions, {o.months} months "
        f"({f.first_day} to {f.last_day} + {o.grace_days} days without faults), "
        f"{o.workers} workers x {o.concurrency} threads, 2 schedulers, seed {o.seed}",
        f"subscriptions: {sum(f.subscriptions.values())} ({_pairs(f.subscriptions)}); "
        f"cards: {_pairs(f.cohorts)}",
        f"periods: {f.periods_attempted} attempted; good cards: {f.tally.periods_due} due by the "
        f"calendar, {f.tally.periods_paid} paid, {f.tally.ended_by_random_declines} ended by "
        f"dunning on random declines",
        f"charges: {sum(f.charges.values())} ({_pairs(f.charges)}), {f.sends} sends to PortOne",
        f"gateway: payments {_pairs(payments)}; calls: again "
        f"{requests.get('POST /subscribe/payments/again', 0)}, find "
        f"{requests.get('GET /payments/find/{merchant_uid}/{payment_status}', 0)}, findAll "
        f"{requests.get('GET /payments/findAll/{merchant_uid}', 0)}, getToken "
        f"{requests.get('POST /users/getToken', 0)}",
        f"faults injected: {sum(faults.values())} ({_pairs(faults)})",
        f"kills (SIGKILL): workers {f.fleet['worker_kills']}, schedulers "
        f"{f.fleet['scheduler_kills']}, redis {f.fleet['redis_kills']}, postgres "
        f"{f.fleet['postgres_kills']}",
        f"restarts: workers {f.fleet['worker_restarts']}, schedulers "
        f"{f.fleet['scheduler_restarts']}, redis {f.fleet['redis_restarts']}, postgres "
        f"{f.fleet['postgres_restarts']}; processes that died by themselves "
        f"{f.fleet['unexpected_exits']} (worker 'Unrecoverable error' {f.fleet['worker_crashes']})",
        f"operators: {_pairs(f.operators)}",
        f"database restored from a pg_dump taken {o.restore_after} steps earlier: "
        f"{f.restores} time(s); `billing reconcile ledger` repaired {f.ledger_repairs}, "
        f"reported {f.ledger_reported}; charges refunded in PortOne's console and recorded: "
        f"{f.refunded_at_portone}",
        f"clock steps: {f.steps} ({f.slow_steps} did not drain within the step timeout; "
        f"drained in {_spread(f.step_seconds)})",
        f"anomalies: {len(f.anomalies)} ({_pairs({k: v for k, v in f.anomaly_counts.items()})})",
        "wall time: "
        + f"{sum(f.seconds.values()):.1f} s ("
        + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in f.seconds.items())
        + ")",
    ]
    lines += [f"  {anomaly.kind}: {anomaly.detail}" for anomaly in f.anomalies[:30]]
    lines += [f"  died by itself: {text}" for text in f.unexpected[:5]]
    return "\n".join(lines)
