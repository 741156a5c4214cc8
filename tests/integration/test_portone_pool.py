"""The client's connection pool over real HTTP: it carries as many calls at once as it was
sized for (a worker's concurrency), never more connections than that, from many threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.portone.client import SHARD_CONNECTIONS, PortOneClient


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.peers: set[tuple[str, int]] = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Gateway

    def do_POST(self) -> None:  # getToken
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        now = int(time.time())
        self._answer({"access_token": "t", "now": now, "expired_at": now + 1800})

    def do_GET(self) -> None:  # a lookup that takes 50 ms
        gateway = self.server
        with gateway.lock:
            gateway.peers.add(self.client_address)
            gateway.in_flight += 1
            gateway.most_in_flight = max(gateway.most_in_flight, gateway.in_flight)
        time.sleep(0.05)
        with gateway.lock:
            gateway.in_flight -= 1
        self._answer({"status": "paid"})

    def _answer(self, response: object) -> None:
        body = json.dumps({"code": 0, "message": None, "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_many_threads_share_the_pool_up_to_its_size(gateway: Gateway) -> None:
    size = 3 * SHARD_CONNECTIONS - SHARD_CONNECTIONS // 2  # several shards, the last smaller
    client = PortOneClient(
        f"http://127.0.0.1:{gateway.server_port}", "k", "s", max_connections=size
    )
    try:
        with ThreadPoolExecutor(2 * size) as pool:
            answers = list(pool.map(lambda n: client.find_paid(f"m-{n}"), range(8 * size)))
    finally:
        client.close()
    assert all(answer.status == 200 for answer in answers)
    assert len(gateway.peers) <= size  # never more connections than the pool was sized for
    assert gateway.most_in_flight > SHARD_CONNECTIONS  # not held to one shard's connections
