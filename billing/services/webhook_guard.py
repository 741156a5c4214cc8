"""Bounds on what unauthenticated PortOne webhooks can make us do (every re-fetch is a call to
PortOne with the merchant's token): token buckets, one per source and one for every
re-fetch of the process, and a short memory of imp_uids PortOne said it does not know.

All thread-safe (webhooks are verified on a few threads) and bounded in memory; the clock is
injected (``time.monotonic`` by default) so tests can pin it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
MAX_KEYS = 10_000  # sources or imp_uids remembered; the oldest is forgotten first


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """``per_second`` on average, ``burst`` at once; ``take()`` is False when spent.
    ``take(key)`` keeps one bucket per key (a source address)."""

    def __init__(self, per_second: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str = "") -> bool:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
            bucket.at = now
            allowed = bucket.tokens >= 1.0
            if allowed:
                bucket.tokens -= 1.0
            self._buckets[key] = bucket
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return allowed


class RecentlyUnknown:
    """imp_uids PortOne answered "no such payment" for, remembered ``seconds``."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, imp_uid: str) -> None:
        with self._lock:
            self._until.pop(imp_uid, None)
            self._until[imp_uid] = self.clock() + self.seconds
            while len(self._until) > MAX_KEYS:
                self._until.popitem(last=False)

    def __contains__(self, imp_uid: object) -> bool:
        with self._lock:
            until = self._until.get(str(imp_uid))
            if until is None:
                return False
            if until <= self.clock():
                del self._until[str(imp_uid)]
                return False
            return True


@dataclass(frozen=True)
class WebhookLimits:
    """The web process's bounds (``billing serve`` options)."""

    per_source: float = 50.0  # webhooks a second from one address (twice that at once)
    refetches: float = 50.0  # re-fetches a second from this process (twice that at once)
    unknown_seconds: float = 60.0  # an imp_uid PortOne does not know is not asked again


@dataclass
class WebhookGuard:
    refetches: RateLimit
    unknown: RecentlyUnknown

    @classmethod
    def from_limits(cls, limits: WebhookLimits, clock: Clock = time.monotonic) -> WebhookGuard:
        refetches = RateLimit(limits.refetches, 2 * limits.refetches, clock)
        return cls(refetches, RecentlyUnknown(limits.unknown_seconds, clock))
