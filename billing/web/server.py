"""How ``billing serve`` runs its app under uvicorn: forwarded headers and slow clients.

Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are believed only from the
proxies ``FORWARDED_ALLOW_IPS`` names; unset, from nobody (uvicorn's own default trusts
127.0.0.1, so any local process could pick the address the webhook allowlist sees).

A client gets ``header_seconds`` to send its request line and headers from its first byte
(or from connecting), and ``body_seconds`` more for its body; past either it is answered
408 and the connection is closed, so slow clients cannot hold sockets forever. An idle
keep-alive connection is closed by uvicorn after ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from billing.logs import log
from billing.web.config import ServerLimits

logger = logging.getLogger("billing.web")
TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 16\r\n\r\nrequest timeout\n"
)


def server_config(
    web: ASGIApp,
    *,
    forwarded_allow_ips: str | None = None,
    limits: ServerLimits | None = None,
    access_log: bool = False,
) -> uvicorn.Config:
    """The uvicorn configuration of the web process (``billing serve`` and the tests)."""
    limits = limits or ServerLimits()
    trusted = (forwarded_allow_ips or "").strip()
    return uvicorn.Config(
        QuietDisconnects(web),
        http=deadline_protocol(limits),
        log_config=None,
        access_log=access_log,
        server_header=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        timeout_keep_alive=limits.keep_alive_seconds,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def deadline_protocol(limits: ServerLimits) -> type[H11Protocol]:
    class DeadlineProtocol(_DeadlineProtocol):
        header_seconds = limits.header_seconds
        body_seconds = limits.body_seconds

    return DeadlineProtocol


class _DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the headers and one for the body."""

    header_seconds = 10.0
    body_seconds = 30.0
    _deadline: asyncio.TimerHandle | None = None
    _phase: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(h11.IDLE, self.header_seconds)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:
            self._arm(h11.IDLE, self.header_seconds)
        elif state is h11.SEND_BODY:
            self._arm(h11.SEND_BODY, self.body_seconds)
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        self._disarm()  # the next request's headers are timed from their first byte
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, phase: object, seconds: float) -> None:
        if self._phase is phase:
            return
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._too_slow, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _too_slow(self, phase: object) -> None:
        self._deadline, self._phase = None, None
        if self.transport.is_closing() or self.conn.their_state is not phase:
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(TIMEOUT_ANSWER)
        what = "headers" if phase is h11.IDLE else "body"
        message = f"request {what} not received in time: connection closed"
        log(logger, "client_too_slow", message, client=_client(self.client))
        self.transport.close()


def _client(address: Any) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


class QuietDisconnects:
    """A client that goes away before its body arrived (an aborted upload) is an info line,
    not a traceback at ERROR: nobody is left to answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            message = "the client went away before its request ended"
            client = _client(scope.get("client"))
            log(logger, "client_disconnected", message, path=scope.get("path"), client=client)
