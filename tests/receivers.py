"""Real receivers for notices: an HTTP webhook endpoint that checks signatures, and an SMTP
server (aiosmtpd), both on free ports in the test process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def standard_webhooks_valid(
    secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300
) -> bool:
    """The receiver's side of Standard Webhooks, as its documentation spells it (written here
    apart from billing.signing): ``whsec_`` secrets are base64, the signed content is
    ``id.timestamp.body``, any ``v1,`` entry may match, a timestamp out of tolerance fails."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        return False
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [entry.split(",", 1) for entry in lowered.get("webhook-signature", "").split()]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in given)


@dataclass
class WebhookReceiver:
    """Checks every signature (the Standard Webhooks one with ``secret``, the legacy
    X-Billing-Signature with ``legacy_secret``, default the same); records each delivery and
    the de-duplicated events."""

    secret: str
    fail_next: int = 0  # answer 500 to this many deliveries first
    legacy_secret: str | None = None
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
        legacy = (self.legacy_secret or self.secret).encode()
        expected = "sha256=" + hmac.new(legacy, body, hashlib.sha256).hexdigest()
        with self.lock:
            legacy_ok = hmac.compare_digest(headers.get("X-Billing-Signature", ""), expected)
            if not (legacy_ok and standard_webhooks_valid(self.secret, headers, body)):
                self.bad_signatures += 1
                return 401
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500
            event = json.loads(body)
            assert event["id"] == headers["X-Billing-Event-Id"] == headers["webhook-id"]
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
