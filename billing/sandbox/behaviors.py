"""The script and fault model: which behavior the next ``again`` call gets, and why.

Precedence for one call for customer_uid X: X's queue (pop one), the global queue (pop one),
the probabilistic faults (one roll of a seeded die), X's default, the global default. A
``latency:MS`` behavior waits, then behaves like the next default in that chain (X's default,
the global default, approve); a latency default adds its wait and passes on the same way.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class BehaviorKind(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    REFUSE = "refuse"
    UNKNOWN_CUSTOMER = "unknown_customer"
    LATENCY = "latency"
    ERROR_500 = "error_500"
    COMMIT_THEN_TIMEOUT = "commit_then_timeout"
    COMMIT_THEN_RESET = "commit_then_reset"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105  (a behavior name, not a secret)
    ALREADY_PAID = "already_paid"  # paid, but answered with PortOne's "already paid" refusal
    NET_CANCEL = "net_cancel"  # approved, the approval answer lost, cancelled by the PG (망취소)
    PAID_THEN_REFUNDED = "paid_then_refunded"  # paid, answer lost, refunded in the console
    READY = "ready"  # recorded but never paid: stays ready when looked up, the answer lost
    RATE_LIMITED = "rate_limited"  # 429 before processing; rate_limited:N adds Retry-After: N


TAKES_TEXT = frozenset({BehaviorKind.DECLINE, BehaviorKind.REFUSE})
# The kinds a die may roll, in the order the probabilities are stacked (fixed, so that a seed
# gives the same faults whatever order the caller's mapping has).
FAULT_KINDS: tuple[BehaviorKind, ...] = (
    BehaviorKind.ERROR_500,
    BehaviorKind.COMMIT_THEN_TIMEOUT,
    BehaviorKind.COMMIT_THEN_RESET,
    BehaviorKind.DECLINE,
    BehaviorKind.TOKEN_EXPIRED,
    BehaviorKind.ALREADY_PAID,
    BehaviorKind.NET_CANCEL,
    BehaviorKind.PAID_THEN_REFUNDED,
    BehaviorKind.READY,
    BehaviorKind.RATE_LIMITED,  # rolled: a 429 without Retry-After
)
DEFAULT_DECLINE_REASON = "잔액부족"
DEFAULT_REFUSE_MESSAGE = "카드사 요청에 의해 결제가 거절되었습니다"


class BehaviorError(ValueError):
    """A behavior string or a fault table that the sandbox cannot follow."""


@dataclass(frozen=True)
class Behavior:
    """One behavior: its kind and the text after ``:`` (reason, message or milliseconds)."""

    kind: BehaviorKind
    argument: str | None = None

    @property
    def latency_ms(self) -> int:
        return int(self.argument or 0) if self.kind is BehaviorKind.LATENCY else 0

    def __str__(self) -> str:
        return self.kind.value if self.argument is None else f"{self.kind.value}:{self.argument}"


APPROVE = Behavior(BehaviorKind.APPROVE)


@dataclass(frozen=True)
class Decision:
    """What one ``again`` call does: wait ``delay_ms``, then follow ``behavior``."""

    behavior: Behavior
    delay_ms: int = 0
    source: str = "default"  # customer | global | fault | default


def parse_behavior(text: str) -> Behavior:
    """``"decline:분실신고 카드"`` -> Behavior(DECLINE, "분실신고 카드")."""
    name, _, argument = text.partition(":")
    try:
        kind = BehaviorKind(name.strip())
    except ValueError:
        known = ", ".join(kind.value for kind in BehaviorKind)
        raise BehaviorError(f"unknown behavior {name!r} (known: {known})") from None
    if kind is BehaviorKind.LATENCY:
        if not argument.strip().isdigit():
            raise BehaviorError("latency needs milliseconds: latency:MS")
        return Behavior(kind, str(int(argument)))
    if kind is BehaviorKind.RATE_LIMITED and argument:
        if not argument.strip().isdigit():
            raise BehaviorError("rate_limited takes whole seconds: rate_limited:N")
        return Behavior(kind, str(int(argument)))
    if argument and kind not in TAKES_TEXT:
        raise BehaviorError(f"behavior {kind.value!r} takes no argument")
    return Behavior(kind, argument or None)


def parse_behaviors(texts: Iterable[str]) -> list[Behavior]:
    """All or nothing: every string parses, or BehaviorError names the first that does not."""
    if isinstance(texts, str):
        raise BehaviorError("behaviors must be a list of strings")
    return [parse_behavior(_text(text)) for text in texts]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise BehaviorError(f"a behavior must be a string, not {value!r}")
    return value


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities of the faults a die may roll for unscripted calls (sum at most 1)."""

    odds: tuple[tuple[BehaviorKind, float], ...] = ()

    @classmethod
    def parse(cls, faults: Mapping[str, object]) -> FaultPlan:
        allowed = {kind.value: kind for kind in FAULT_KINDS}
        odds: dict[BehaviorKind, float] = {}
        for name, value in faults.items():
            kind = allowed.get(name)
            if kind is None:
                raise BehaviorError(f"unknown fault {name!r} (allowed: {', '.join(allowed)})")
            odds[kind] = _probability(name, value)
        if sum(odds.values()) > 1.0 + 1e-9:
            raise BehaviorError("fault probabilities add up to more than 1")
        return cls(tuple((kind, odds[kind]) for kind in FAULT_KINDS if odds.get(kind)))

    def roll(self, die: random.Random) -> Behavior | None:
        """One roll: the fault it lands on, or None (no fault)."""
        if not self.odds:
            return None
        point = die.random()
        for kind, probability in self.odds:
            if point < probability:
                return Behavior(kind)
            point -= probability
        return None


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BehaviorError(f"fault {name!r} needs a probability between 0 and 1")
    return float(value)


class Script:
    """Owns the queues, the defaults and the fault dice; thread-safe.

    ``next_for`` is the only place where the precedence is decided.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._queues: dict[str | None, deque[Behavior]] = {}
        self._defaults: dict[str | None, Behavior] = {None: APPROVE}
        self._faults = FaultPlan()
        self._die = random.Random(seed)

    def queue(self, customer_uid: str | None, behaviors: Iterable[Behavior]) -> None:
        """Append behaviors to ``customer_uid``'s queue (None: the global queue)."""
        with self._lock:
            self._queues.setdefault(customer_uid, deque()).extend(behaviors)

    def set_default(self, customer_uid: str | None, behavior: Behavior) -> None:
        with self._lock:
            self._defaults[customer_uid] = behavior

    def set_faults(self, plan: FaultPlan, seed: int | None) -> None:
        """New fault odds and a fresh die (seeded with ``seed``, else the sandbox's seed)."""
        with self._lock:
            self._faults = plan
            self._die = random.Random(self._seed if seed is None else seed)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._defaults = {None: APPROVE}
            self._faults = FaultPlan()
            self._die = random.Random(self._seed)

    def next_for(self, customer_uid: str) -> Decision:
        """Decide (and consume) the behavior of the next ``again`` call for ``customer_uid``."""
        with self._lock:
            chain = self._default_chain(customer_uid)
            picked = self._pick(customer_uid)
            if picked is None:
                picked, chain = Decision(chain[0], source="default"), chain[1:]
            behavior, delay = picked.behavior, 0
            while behavior.kind is BehaviorKind.LATENCY:
                delay += behavior.latency_ms
                behavior, chain = chain[0], chain[1:]
            return Decision(behavior, delay, picked.source)

    def _pick(self, customer_uid: str) -> Decision | None:
        """A queued behavior (the customer's first, then the global one) or a rolled fault."""
        for owner, source in ((customer_uid, "customer"), (None, "global")):
            queue = self._queues.get(owner)
            if queue:
                return Decision(queue.popleft(), source=source)
        fault = self._faults.roll(self._die)
        return None if fault is None else Decision(fault, source="fault")

    def _default_chain(self, customer_uid: str) -> list[Behavior]:
        """The customer's default, the global default, then approve: what a latency leads to."""
        defaults = (self._defaults.get(customer_uid), self._defaults.get(None))
        return [default for default in defaults if default is not None] + [APPROVE]
