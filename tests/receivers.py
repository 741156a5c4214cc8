"""Real receivers for notices: an HTTP webhook endpoint that checks signatures, and an SMTP
server (aiosmtpd), both on free ports in the test process."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class WebhookReceiver:
    """Checks every signature; records each delivery and the de-duplicated events."""

    secret: str
    fail_next: int = 0  # answer 500 to this many deliveries first
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by event id
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/billing-events"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.receive(body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        with self.lock:
            if not hmac.compare_digest(headers.get("X-Billing-Signature", ""), expected):
                self.bad_signatures += 1
                return 401
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500
            event = json.loads(body)
            assert event["id"] == headers["X-Billing-Event-Id"]
            self.deliveries.append(event)
            self.events.setdefault(event["id"], event)  # de-duplication by event id
            return 204

    def types(self) -> list[str]:
        with self.lock:
            return sorted(e["type"] for e in self.events.values())

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """aiosmtpd on a free port (it cannot listen on port 0 itself). With ``login``
    ``(user, password)`` it requires that login (AUTH over plain text: a test server) and
    records every attempt in ``logins``."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.login = login
        self.logins: list[tuple[str, str]] = []
        options: dict[str, Any] = {}
        if login is not None:
            options = {
                "authenticator": self._authenticate,
                "auth_require_tls": False,
                "auth_required": True,
            }
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)

    def _authenticate(self, *args: Any) -> AuthResult:
        data = args[-1]
        given = (data.login.decode(), data.password.decode())
        self.logins.append(given)
        return AuthResult(success=given == self.login)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def stop(self) -> None:
        self.controller.stop()
