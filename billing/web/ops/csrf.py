"""CSRF tokens for the console's forms, with no cookie and no server-side state.

A browser sends the console's basic credentials with any request to its origin, a forged
cross-site form included; what such a form cannot carry is a token read from one of our pages
(the same-origin policy keeps it from the forger). A token is ``<issued>.<HMAC>``: the time
it was made and its signature under a key derived from BILLING_OPS_AUTH, so that every web
process behind a load balancer accepts the tokens of the others, and changing the password
voids every token. Tokens last a working day.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable

from billing.web.ops.auth import OpsAuth

LIFETIME = 12 * 3600  # seconds a token is accepted
SKEW = 60  # seconds a token may seem to come from the future (clocks of several processes)
FIELD = "csrf"
DIGITS = re.compile("[0-9]{1,12}")


class CsrfTokens:
    def __init__(self, auth: OpsAuth, clock: Callable[[], float] = time.time) -> None:
        secret = f"{auth.user}:{auth.password}".encode()
        self._key = hmac.new(b"billing ops csrf", secret, hashlib.sha256).digest()
        self._clock = clock

    def issue(self) -> str:
        issued = int(self._clock())
        return f"{issued}.{self._sign(issued)}"

    def valid(self, token: str | None) -> bool:
        issued_text, dot, signature = (token or "").partition(".")
        if not dot or not DIGITS.fullmatch(issued_text):
            return False
        issued = int(issued_text)
        age = self._clock() - issued
        fresh = -SKEW <= age <= LIFETIME
        expected = self._sign(issued).encode()
        return hmac.compare_digest(signature.encode(), expected) and fresh

    def _sign(self, issued: int) -> str:
        return hmac.new(self._key, str(issued).encode(), hashlib.sha256).hexdigest()
