"""Who may read ``/metrics`` (revenue figures) and the details of ``/readyz`` (internal hosts).

``BILLING_METRICS_TOKEN`` set: only ``Authorization: Bearer <token>`` (compared in constant
time). Unset or blank: only loopback clients, and a request that came through a proxy (it
carries ``Forwarded`` or ``X-Forwarded-For``) is not a loopback client, whatever address the
proxy connected from. ``/healthz`` stays open to everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

TOKEN_VARIABLE = "BILLING_METRICS_TOKEN"  # noqa: S105 (a variable's name)
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


@dataclass(frozen=True)
class InsightAccess:
    """``token`` None: loopback clients only."""

    token: str | None = field(default=None, repr=False)

    def allows(self, request: Request) -> bool:
        if self.token is not None:
            return _bearer_matches(request.headers.get("authorization", ""), self.token)
        return is_loopback_client(request)

    def refusal(self) -> Response:
        if self.token is not None:
            body = {"error": f"Authorization: Bearer <{TOKEN_VARIABLE}> required"}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        reason = f"only loopback clients, unless {TOKEN_VARIABLE} is set"
        return JSONResponse({"error": reason}, status_code=403)


def load_insight_access(environ: Mapping[str, str] | None = None) -> InsightAccess:
    token = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "").strip()
    return InsightAccess(token or None)


def is_loopback_client(request: Request) -> bool:
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


def _bearer_matches(authorization: str, token: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    given_digest = hashlib.sha256(given.strip().encode()).digest()  # not even the length shows
    return hmac.compare_digest(given_digest, hashlib.sha256(token.encode()).digest())
