"""``BILLING_OPS_AUTH=user:password``: HTTP basic authentication for the console.

Unset (or blank), the console is off and ``/ops`` answers 404. Set, both parts must be
non-empty, or ``billing serve`` refuses to start. Credentials are compared in constant time
(as digests, so that not even their length shows), and a refusal is logged with the client
and the path only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.errors import ConfigError
from billing.logs import log

logger = logging.getLogger("billing.ops")
VARIABLE = "BILLING_OPS_AUTH"
REALM = 'Basic realm="billing operator console", charset="UTF-8"'
# Every answer of the console: never cached (a proxy must not keep a page of money), never
# framed (its buttons move money), no referrer (its URLs name customers), only its own CSS.
HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
UNAUTHORIZED = (
    "<!doctype html><title>401 - billing operator console</title>"
    "<p>401: the operator console needs the user and password of BILLING_OPS_AUTH.</p>"
)


@dataclass(frozen=True)
class OpsAuth:
    user: str
    password: str = field(repr=False)

    @property
    def actor(self) -> str:
        """Who the event log says acted: ``ops:<user>``."""
        return f"ops:{self.user}"

    def accepts(self, authorization: str | None) -> bool:
        """True for ``Basic base64(user:password)`` with this user and password."""
        given = _basic(authorization)
        if given is None:
            return False
        same_user = _same(given[0], self.user)
        same_password = _same(given[1], self.password)
        return same_user & same_password  # both compared, whatever the first says


def parse_ops_auth(text: str | None) -> OpsAuth | None:
    if text is None or not text.strip():
        return None
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ConfigError(f"{VARIABLE}: must be user:password, both non-empty")
    return OpsAuth(user, password)


def load_ops_auth(environ: Mapping[str, str] | None = None) -> OpsAuth | None:
    source = os.environ if environ is None else environ
    return parse_ops_auth(source.get(VARIABLE))


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _same(given: str, expected: str) -> bool:
    left = hashlib.sha256(given.encode()).digest()
    return hmac.compare_digest(left, hashlib.sha256(expected.encode()).digest())


class Guard:
    """ASGI middleware: 401 without the right credentials; the console's headers on every
    answer it lets through."""

    def __init__(self, app: ASGIApp, auth: OpsAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.auth.accepts(Headers(scope=scope).get("authorization")):
            client = scope.get("client")
            log(
                logger,
                "ops_auth_refused",
                "wrong or missing credentials",
                level=logging.WARNING,
                client=client[0] if client else None,
                path=scope.get("path"),
            )
            headers = {**HEADERS, "WWW-Authenticate": REALM}
            await HTMLResponse(UNAUTHORIZED, 401, headers=headers)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    answer[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
