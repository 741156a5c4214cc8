"""A ceiling on calls to PortOne shared by every process on every machine:
``BILLING_PORTONE_MAX_RPS``, a token bucket in Redis.

Nobody publishes PortOne's or the PG's limits, so the merchant sets the number its PG agreed
to. The bucket is one Redis hash updated by a Lua script (atomic on the server, timed by the
server's own clock, so no two machines' clocks need to agree); every call to PortOne takes a
token first. A 429 from PortOne pauses every caller of the bucket, not only the one that saw
it: ``Retry-After`` (seconds, or an HTTP date) when given, else ``DEFAULT_PAUSE``.

Why a script rather than a library: the bucket is 20 lines of Lua with no dependency, and
the kept Python limiters (``limits``, ``pyrate-limiter``) either count fixed windows (a burst
of twice the rate at a window edge) or keep the state per process. When Redis cannot be
reached the ceiling is not enforced (logged once a minute): the broker is down then too, and
refusing to send would leave charges waiting for no money reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from billing.logs import log

logger = logging.getLogger("billing.portone.ratelimit")

DEFAULT_PAUSE = 1.0  # seconds, after a 429 without Retry-After
MAX_PAUSE = 60.0  # a Retry-After longer than this is taken as this
WARN_EVERY = 60.0
KEY = "billing:portone:bucket"

# KEYS: bucket, pause. ARGV: rate per second, burst. Returns the seconds to wait (a string:
# Lua numbers are returned to Redis clients as integers), "0" when a token was taken.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return tostring(paused - now) end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(1000 * (burst / rate + 60)))
return tostring(wait)
"""
# KEYS: pause. ARGV: seconds. Pauses until now + seconds unless a longer pause is set.
PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > paused then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(1000 * tonumber(ARGV[1])) + 1000)
end
return tostring(until_ - now)
"""


class RateLimit(Protocol):
    def take(self, deadline: float | None) -> bool:
        """Wait for a token; False when ``deadline`` (time.monotonic) came first."""
        ...

    def pause(self, seconds: float) -> None:
        """Every caller waits ``seconds`` (PortOne answered 429)."""
        ...


class NoLimit:
    """No ceiling (BILLING_PORTONE_MAX_RPS unset)."""

    def take(self, deadline: float | None) -> bool:
        return True

    def pause(self, seconds: float) -> None:
        return None


class RedisBucket:
    """``rate`` calls a second across every process using ``redis`` with the same key,
    ``burst`` at once after a quiet spell (default: one second's worth, at least 1)."""

    def __init__(
        self,
        redis: Any,
        rate: float,
        burst: float | None = None,
        key: str = KEY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._take = redis.register_script(TAKE)
        self._pause = redis.register_script(PAUSE)
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._keys = [key, f"{key}:pause"]
        self._sleep = sleep
        self._warned = 0.0
        self._lock = threading.Lock()

    def take(self, deadline: float | None) -> bool:
        while True:
            wait = self._ask(self._take, self._keys, [self.rate, self.burst])
            if wait <= 0:
                return True
            if deadline is not None and time.monotonic() + wait > deadline:
                return False
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        self._ask(self._pause, self._keys[1:], [min(MAX_PAUSE, max(0.0, seconds))])

    def _ask(self, script: Any, keys: list[str], args: list[float]) -> float:
        try:
            return float(script(keys=keys, args=args))
        except Exception as exc:  # Redis unreachable or refusing: the ceiling is not enforced
            self._warn(exc)
            return 0.0

    def _warn(self, exc: Exception) -> None:
        with self._lock:
            if time.monotonic() - self._warned < WARN_EVERY:
                return
            self._warned = time.monotonic()
        log(logger, "rate_limit_unavailable", level=logging.WARNING, error=type(exc).__name__)


def retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return DEFAULT_PAUSE
    text = value.strip()
    if text.isdigit():
        return min(MAX_PAUSE, float(text))
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return DEFAULT_PAUSE
    return min(MAX_PAUSE, max(0.0, when - (time.time() if now is None else now)))
