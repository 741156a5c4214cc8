"""The route table: which path and method reach which endpoint, with which checks.

``dispatch`` is the whole request pipeline without sockets: match the route, count it, fire
the hosted schedules that are due, check
the token (PortOne routes), add the configured latency, decode the body, call the endpoint,
and turn InvalidRequest into code -1 (in a 200 for PortOne routes, as its document says; 400
for the admin routes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from urllib.parse import parse_qsl, unquote

from billing.sandbox import admin, charging, endpoints, lookups, scheduler
from billing.sandbox.fields import decode_body, decode_control_body
from billing.sandbox.protocol import (
    InvalidRequest,
    Reply,
    Request,
    not_found,
    refusal,
    unauthorized,
)
from billing.sandbox.state import SandboxState

Endpoint = Callable[[SandboxState, Request], Reply]


class Access(Enum):
    OPEN = "open"  # getToken
    TOKEN = "token"  # noqa: S105  (every other PortOne endpoint)
    ADMIN = "admin"  # /__sandbox__/...: no token, no latency


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/payments/find/{merchant_uid}"
    endpoint: Endpoint
    access: Access = Access.TOKEN
    invalid: int = 200  # the HTTP status of a field error (the document's, where it has one)

    @cached_property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @cached_property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters when ``segments`` fit this route's path, else None."""
        pattern = self.segments
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if expected.startswith("{"):
                params[expected[1:-1]] = actual
            elif expected != actual:
                return None
        return params


@dataclass(frozen=True)
class RawRequest:
    """What the HTTP layer read: method, target, body, content type and the token if any."""

    method: str
    target: str
    body: bytes = b""
    content_type: str = ""
    token: str | None = None


ROUTES: tuple[Route, ...] = (
    Route("POST", "/users/getToken", endpoints.get_token, Access.OPEN),
    Route("POST", "/subscribe/payments/again", charging.again),
    Route("POST", "/subscribe/payments/onetime", charging.onetime),
    Route("POST", "/payments/cancel", endpoints.cancel),
    Route("POST", "/subscribe/payments/schedule", scheduler.schedule),
    Route("POST", "/subscribe/payments/unschedule", scheduler.unschedule),
    Route("GET", "/subscribe/payments/schedule", scheduler.by_range, invalid=400),
    Route("GET", "/subscribe/payments/schedule/{merchant_uid}", scheduler.get_one),
    Route(
        "GET",
        "/subscribe/payments/schedule/customers/{customer_uid}",
        scheduler.by_customer,
        invalid=400,
    ),
    Route(
        "GET", "/subscribe/customers/{customer_uid}/schedules", scheduler.by_customer, invalid=400
    ),
    Route("GET", "/payments/find/{merchant_uid}", endpoints.find),
    Route("GET", "/payments/find/{merchant_uid}/{payment_status}", endpoints.find),
    Route("GET", "/payments/findAll/{merchant_uid}", endpoints.find_all),
    Route("GET", "/payments/findAll/{merchant_uid}/{payment_status}", endpoints.find_all),
    Route("GET", "/payments/status/{payment_status}", endpoints.by_status, invalid=400),
    Route("GET", "/payments", lookups.payments),
    Route("GET", "/subscribe/customers", lookups.customers),
    Route("GET", "/subscribe/customers/{customer_uid}/payments", lookups.customer_payments),
    Route("GET", "/payments/{imp_uid}", endpoints.payment),
    Route("GET", "/subscribe/customers/{customer_uid}", endpoints.customer_get),
    Route("POST", "/subscribe/customers/{customer_uid}", endpoints.customer_post),
    Route("DELETE", "/subscribe/customers/{customer_uid}", endpoints.customer_delete),
    Route("POST", f"/{admin.PREFIX}/script", admin.script, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/default", admin.default, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/faults", admin.faults, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/latency", admin.latency, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/expire-tokens", admin.expire_tokens, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/reset", admin.reset, Access.ADMIN),
    Route("POST", f"/{admin.PREFIX}/clock", admin.clock, Access.ADMIN),
    Route("GET", f"/{admin.PREFIX}/clock", admin.clock_now, Access.ADMIN),
    Route("GET", f"/{admin.PREFIX}/ledger", admin.ledger, Access.ADMIN),
    Route("GET", f"/{admin.PREFIX}/stats", admin.stats, Access.ADMIN),
)


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]] | Reply:
    """The route and its parameters, or the 404 answer (unknown path or method)."""
    segments = [unquote(part) for part in path.strip("/").split("/")]
    for route in ROUTES:
        if route.method == method:
            params = route.match(segments)
            if params is not None:
                return route, params
    return not_found(f"the sandbox has no endpoint {method} {path}")


def dispatch(state: SandboxState, raw: RawRequest) -> Reply:
    path, _, query = raw.target.partition("?")
    resolved = resolve(raw.method, path)
    if isinstance(resolved, Reply):
        state.counters.request("unknown")
        return resolved
    route, params = resolved
    state.counters.request(route.name)
    scheduler.fire_due(state)  # what fell due since the last request has fired before it
    if route.access is Access.TOKEN and not state.tokens.valid(raw.token):
        return unauthorized()
    if route.access is not Access.ADMIN and state.latency_ms:
        state.sleep(state.latency_ms / 1000)
    try:
        decode = decode_control_body if route.access is Access.ADMIN else decode_body
        fields = decode(raw.body, raw.content_type)
        return route.endpoint(state, _request(params, query, fields, raw.token))
    except InvalidRequest as exc:
        # PortOne's document lists only 200 and 401 (and 404) for most endpoints: a field error
        # is code -1 in a 200, where a client reads the message; where it lists a 400 (status
        # lookups), a 400; the admin routes are ours: 400
        return refusal(str(exc), 400 if route.access is Access.ADMIN else route.invalid)


def _request(
    params: dict[str, str], query: str, fields: dict[str, object], token: str | None
) -> Request:
    pairs = parse_qsl(query, keep_blank_values=True)
    lists: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        lists[name] = (*lists.get(name, ()), value)
    return Request(params, dict(pairs), fields, token, lists)
