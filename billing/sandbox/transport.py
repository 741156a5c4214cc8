"""The HTTP/1.1 transport: a threading socket server, its request handler, and the
socket-level faults (a held connection, a TCP reset).

Every connection has its own daemon thread and stays open between requests (keep-alive);
every answer is written in one piece with a Content-Length. A sleeping handler (latency,
held connection) blocks only its own connection.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from billing.sandbox.protocol import Delivery, Reply, refusal
from billing.sandbox.routes import RawRequest, dispatch
from billing.sandbox.state import SandboxState

log = logging.getLogger("billing.sandbox")

MAX_BODY = 1 << 20
REASONS = {
    200: "OK",
    207: "Multi-Status",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
}
RESET_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class SandboxHTTPServer(ThreadingHTTPServer):
    """Owns the listening socket and the open connections (to drop them on stop)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: SandboxState) -> None:
        self.state = state
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), SandboxHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Shut every open connection (idle keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection's failure is logged, never printed to the client or fatal."""
        log.debug("connection from %s failed", client_address, exc_info=True)


class SandboxHandler(BaseHTTPRequestHandler):
    """Reads one request, lets ``dispatch`` answer it, delivers the answer or the fault."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            with suppress(OSError):
                super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            raw = self._read()
            reply = raw if isinstance(raw, Reply) else dispatch(self.server.state, raw)
        except Exception:
            log.exception("sandbox failed on %s %s", self.command, self.path.partition("?")[0])
            reply = refusal("sandbox internal error", 500)
        self._deliver(reply)

    def _read(self) -> RawRequest | Reply:
        """The request with its body, or the answer to a body that cannot be read."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body: bytes | Reply = self._read_chunked()
        else:
            body = self._read_sized(self.headers.get("Content-Length"))
        if isinstance(body, Reply):
            self.close_connection = True
            return body
        content_type = self.headers.get("Content-Type", "")
        return RawRequest(self.command, self.path, body, content_type, self._token())

    def _read_sized(self, length: str | None) -> bytes | Reply:
        if not length:
            return b""
        if not length.strip().isdigit():
            return refusal("bad Content-Length", 400)
        size = int(length)
        if size > MAX_BODY:
            return refusal(f"body larger than {MAX_BODY} bytes", 413)
        body = self.rfile.read(size)
        return body if len(body) == size else refusal("body shorter than Content-Length", 400)

    def _read_chunked(self) -> bytes | Reply:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                return refusal("malformed chunked body", 400)
            total += size
            if total > MAX_BODY:
                return refusal(f"body larger than {MAX_BODY} bytes", 413)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after the chunk

    def _token(self) -> str | None:
        """``Authorization: Bearer <token>``, ``Basic <token>`` (the form of the document's
        own examples for some channels), a bare token, or ``X-ImpTokenHeader``."""
        value = self.headers.get("Authorization") or self.headers.get("X-ImpTokenHeader")
        if not value:
            return None
        scheme, _, rest = value.strip().partition(" ")
        named = rest and scheme.lower() in ("bearer", "basic")
        return rest.strip() if named else value.strip()

    def _deliver(self, reply: Reply) -> None:
        if reply.delivery is Delivery.RESET:
            self._reset()
        elif reply.delivery is Delivery.HANG:
            self._hang()
        else:
            body = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
            self._write(reply.status, body, reply.headers)

    def _write(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        closing = "Connection: close\r\n" if self.close_connection else ""
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}{closing}\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)
        if self.server.state.config.verbose:
            self.log_request(status, len(body))

    def _hang(self) -> None:
        """Say nothing for ``hang_seconds`` (or until stop), then close the connection."""
        self.close_connection = True
        state = self.server.state
        state.closing.wait(state.config.hang_seconds)

    def _reset(self) -> None:
        """Abort the connection: RST, no answer."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
            self.connection.close()
            self.rfile.close()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, unsupported method) as JSON, then close."""
        self.close_connection = True
        with suppress(OSError):
            body = json.dumps(
                {"code": -1, "message": message or REASONS.get(code, "error"), "response": None},
                ensure_ascii=False,
            ).encode()
            self._write(code, body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.state.config.verbose:
            super().log_message(format, *args)
