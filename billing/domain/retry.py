"""How long to wait before trying again: capped exponential backoff with jitter (pure).

One policy, several uses: a charge answered "not sent" (a connect error, 401 or 429), and
lookups by merchant_uid that PortOne could not answer. The jitter is a number in [0, 1)
passed in, so tests pin it; callers pass ``random.random()``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``base * 2**(n-1)`` seconds for the n-th try, at most ``cap``, then between half
    and all of that (full jitter would allow waits near zero, which is how loops start)."""

    base: float
    cap: float

    def delay(self, tries: int, jitter: float) -> float:
        step = min(self.cap, self.base * 2 ** max(0, tries - 1))
        return float(step * (0.5 + 0.5 * jitter))


TRANSIENT = Backoff(base=2.0, cap=120.0)  # a send that never reached PortOne
LOOKUP = Backoff(base=2.0, cap=600.0)  # a lookup PortOne could not answer
