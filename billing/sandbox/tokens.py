"""Access tokens: issued by getToken, checked on every other call, revocable at will."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

LAST_MINUTE = 60  # seconds: a token asked for this close to its expiry is extended
EXTENSION = 300  # by five minutes (PortOne's documented behaviour)


@dataclass(frozen=True)
class IssuedToken:
    """The ``response`` of getToken."""

    access_token: str
    now: int
    expired_at: int

    def __repr__(self) -> str:
        return f"IssuedToken(access_token=<hidden>, now={self.now}, expired_at={self.expired_at})"


class TokenStore:
    """Owns the live tokens; thread-safe.

    Asking again before expiry returns the current token with the same ``expired_at``, except
    in its last minute, when the same token is extended by ``EXTENSION`` (as PortOne does);
    after expiry or revocation, a new one. Tokens live ``ttl`` seconds.
    """

    def __init__(self, ttl: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, int] = {}
        self._current: str | None = None

    def issue(self) -> IssuedToken:
        now = int(self._clock())
        with self._lock:
            current = self._current
            if current is not None and self._expiry.get(current, 0) > now:
                if self._expiry[current] - now <= LAST_MINUTE:
                    self._expiry[current] += EXTENSION
                return IssuedToken(current, now, self._expiry[current])
            self._expiry = {t: at for t, at in self._expiry.items() if at > now}
            token = secrets.token_hex(20)
            self._expiry[token] = now + self._ttl
            self._current = token
            return IssuedToken(token, now, now + self._ttl)

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expires = self._expiry.get(token)
        return expires is not None and self._clock() < expires

    def revoke(self, token: str | None) -> None:
        """That token answers 401 from now on; the next getToken issues a new one."""
        with self._lock:
            self._expiry.pop(token or "", None)
            if self._current == token:
                self._current = None

    def expire_all(self) -> int:
        """Every issued token becomes invalid now; answers how many were live."""
        with self._lock:
            count = len(self._expiry)
            self._expiry.clear()
            self._current = None
            return count
