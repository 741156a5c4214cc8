"""The PortOne V1 REST client: one pooled client per process, a cached access token.

The connection pool is split into shards of at most ``SHARD_CONNECTIONS`` connections (one
httpx.Client each), and every thread keeps to one shard: httpcore's pool scans all of its
connections under one lock on every request and every response close, so a single pool of
128 connections spent most of a worker's CPU in that scan (docs/performance.md).

The client never decides what an answer means (see ``answers``); it turns every call into an
``Exchange`` and never raises for a network or HTTP failure. It never logs the token or
imp_secret.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx

from billing.domain.charges import ChargeRequest
from billing.portone.answers import Exchange, Transport
from billing.portone.ratelimit import NoLimit, RateLimit, retry_after

TOKEN_MARGIN = 60.0  # seconds: a token this close to expiry is renewed before use
CONNECT_TIMEOUT = 5.0
POOL_TIMEOUT = 10.0
SHARD_CONNECTIONS = 4


class TokenUnavailable(Exception):
    """getToken failed; nothing else was sent. Carries an Exchange describing why."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(exchange.detail or f"HTTP {exchange.status}")
        self.exchange = exchange


class PortOneClient:
    """Thread-safe; share one per process. ``transport`` is for tests (httpx.MockTransport)."""

    def __init__(
        self,
        base_url: str,
        imp_key: str,
        imp_secret: str,
        *,
        timeout: float = 30.0,
        max_connections: int = 10,
        transport: httpx.BaseTransport | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        self._credentials = {"imp_key": imp_key, "imp_secret": imp_secret}
        self._limit = limit or NoLimit()
        total = max(1, max_connections)
        shards = -(-total // SHARD_CONNECTIONS)
        sizes = [total // shards + (1 if n < total % shards else 0) for n in range(shards)]
        self._shards = tuple(
            httpx.Client(
                base_url=base_url,
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT, pool=POOL_TIMEOUT),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                transport=transport,
                headers={"Accept": "application/json", "User-Agent": "billing/portone-v1"},
            )
            for size in sizes
        )
        self._next_shard = itertools.count()
        self._thread = threading.local()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_deadline = 0.0  # time.monotonic() after which the token is not used

    def __repr__(self) -> str:
        return f"PortOneClient({self._shards[0].base_url!s})"

    def close(self) -> None:
        for shard in self._shards:
            shard.close()

    def _http(self) -> httpx.Client:
        """This thread's shard, assigned round-robin on its first call."""
        shard: httpx.Client | None = getattr(self._thread, "shard", None)
        if shard is None:
            shard = self._shards[next(self._next_shard) % len(self._shards)]
            self._thread.shard = shard
        return shard

    # -- the calls ---------------------------------------------------------------------------

    def again(self, request: ChargeRequest, send_within: float | None = None) -> Exchange:
        """Charge a billing key. A 401 is answered by one token refresh and one replay.

        ``send_within``: seconds from now after which the request is no longer sent (a token
        fetch or a full pool can hold it back): it is then answered NOT_SENT, so that no
        send outlives the reconciliation window that decides when it may be sent again."""
        deadline = None if send_within is None else time.monotonic() + send_within
        body = request.body()
        return self._authorized("POST", "/subscribe/payments/again", json=body, deadline=deadline)

    def find_paid(self, merchant_uid: str) -> Exchange:
        return self._authorized("GET", f"/payments/find/{_segment(merchant_uid)}/paid")

    def find_all(self, merchant_uid: str) -> Exchange:
        return self._authorized("GET", f"/payments/findAll/{_segment(merchant_uid)}")

    def payment(self, imp_uid: str, *, include_sandbox: bool = False) -> Exchange:
        params = {"include_sandbox": "true"} if include_sandbox else None
        return self._authorized("GET", f"/payments/{_segment(imp_uid)}", params=params)

    def payments_by_status(
        self, status: str, since: int, until: int, page: int, limit: int = 1000
    ) -> Exchange:
        """One page of PortOne's ledger: payments in ``status`` in [since, until] (unix s)."""
        params = {"from": since, "to": until, "page": page, "limit": limit, "sorting": "started"}
        return self._authorized("GET", f"/payments/status/{_segment(status)}", params=params)

    def customer(self, customer_uid: str) -> Exchange:
        return self._authorized("GET", f"/subscribe/customers/{_segment(customer_uid)}")

    def call(self, method: str, path: str, **options: Any) -> Exchange:
        """Any authorized V1 call (a 401 gets one token refresh and one replay)."""
        return self._authorized(method, path, **options)

    def token(self) -> str:
        """A valid access token, from the cache while it has more than a minute left."""
        with self._lock:
            if self._token is not None and time.monotonic() < self._token_deadline:
                return self._token
            self._token, lifetime = self._fetch_token()
            self._token_deadline = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN)
            return self._token

    # -- plumbing ----------------------------------------------------------------------------

    def _authorized(
        self, method: str, path: str, *, deadline: float | None = None, **options: Any
    ) -> Exchange:
        try:
            token = self.token()
        except TokenUnavailable as exc:
            return exc.exchange
        exchange = self._send(method, path, token, deadline, **options)
        if exchange.status == 401:  # expired or revoked: not processed, safe to replay once
            self._forget(token)
            try:
                token = self.token()
            except TokenUnavailable as exc:
                return exc.exchange
            exchange = self._send(method, path, token, deadline, **options)
        return exchange

    def _forget(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        exchange = self._exchange("POST", "/users/getToken", json=self._credentials)
        if exchange.failure is not None:
            raise TokenUnavailable(Exchange(failure=Transport.NOT_SENT, detail=exchange.detail))
        try:
            answer = json.loads(exchange.body)["response"]
            token = answer["access_token"]
            lifetime = float(answer["expired_at"]) - float(answer["now"])
        except (ValueError, KeyError, TypeError):
            detail = f"getToken answered HTTP {exchange.status} without a token"
            raise TokenUnavailable(
                Exchange(exchange.status, failure=Transport.NOT_SENT, detail=detail)
            ) from None
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(Exchange(failure=Transport.NOT_SENT, detail="empty token"))
        return token, lifetime

    def _send(
        self, method: str, path: str, token: str, deadline: float | None, **options: Any
    ) -> Exchange:
        if deadline is not None and time.monotonic() > deadline:
            return Exchange(failure=Transport.NOT_SENT, detail="held back past its send deadline")
        headers = {"Authorization": f"Bearer {token}"}
        return self._exchange(method, path, deadline, headers=headers, **options)

    def _exchange(
        self, method: str, path: str, deadline: float | None = None, **options: Any
    ) -> Exchange:
        """One HTTP call, after a token of BILLING_PORTONE_MAX_RPS (not sent when it would
        come after ``deadline``); a 429 pauses every caller of that ceiling."""
        if not self._limit.take(deadline):
            return Exchange(failure=Transport.NOT_SENT, detail="held back by the rate ceiling")
        try:
            response = self._http().request(method, path, **options)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Exchange(failure=Transport.NOT_SENT, detail=type(exc).__name__)
        except httpx.TransportError as exc:  # read/write timeout, reset, protocol error
            return Exchange(failure=Transport.NO_ANSWER, detail=type(exc).__name__)
        if response.status_code == 429:
            self._limit.pause(retry_after(response.headers.get("Retry-After")))
        return Exchange(response.status_code, response.content)


def _segment(value: str) -> str:
    return quote(value, safe="")
