"""How long to wait before trying again, for every kind of work (pure; the constants of
waiting all live here).

One policy, capped exponential backoff with jitter, serves a charge answered "not sent" (a
connect error, 401 or 429), lookups PortOne could not answer, refunds whose request never
left, and notices whose receiver failed. The jitter is a number in [0, 1) passed in, so tests
pin it; callers pass ``random.random()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    """``base * 2**(n-1)`` seconds for the n-th try, at most ``cap``, then between half
    and all of that (full jitter would allow waits near zero, which is how loops start)."""

    base: float
    cap: float

    def delay(self, tries: int, jitter: float) -> float:
        step = min(self.cap, self.base * 2 ** max(0, tries - 1))
        return float(step * (0.5 + 0.5 * jitter))


TRANSIENT = Backoff(base=2.0, cap=120.0)  # a charge that never reached PortOne
LOOKUP = Backoff(base=2.0, cap=600.0)  # a lookup PortOne could not answer
REFUND_NOT_SENT = Backoff(base=0.5, cap=2.0)  # a refund whose request never left, in-process
NOTICE = Backoff(base=10.0, cap=3600.0)  # a notice its receiver did not take

FIRST_LOOKUP_DELAY = 2.0  # seconds after an unknown charge outcome before asking PortOne
FIRST_REFUND_LOOKUP_DELAY = 1.0  # the same for a refund, in the command that asked for it
LOOKUP_EVERY = 15.0  # at most this many seconds between lookups inside the window
LOOKUP_FLOOR = 1.0  # and never sooner than this after the last one
LOOKUP_LEASE = 60.0  # seconds a reconciler owns an open charge while it asks PortOne...
REFUSAL_LEASE = 5.0  # a refusal is looked up at once; the sweep hands it out after this


def lookup_lease(window: timedelta) -> timedelta:
    """...or the reconciliation window, if that is shorter: a lookup whose message was lost
    (a worker killed while it held it) is handed out again after this. Two lookups of one
    charge at once cost one more GET and nothing else (the recording locks the row)."""
    return min(timedelta(seconds=LOOKUP_LEASE), window)
