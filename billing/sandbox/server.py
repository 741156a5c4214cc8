"""``SandboxServer``: the bundled PortOne V1 sandbox as one object to start, script and stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

from billing.errors import BillingError
from billing.sandbox import scheduler
from billing.sandbox.config import SandboxConfig
from billing.sandbox.protocol import JSONObject
from billing.sandbox.state import SandboxState
from billing.sandbox.transport import SandboxHTTPServer

log = logging.getLogger("billing.sandbox")

POLL_SECONDS = 0.05
TICK_SECONDS = 1.0  # how often due hosted schedules fire in real time


class SandboxError(BillingError):
    """The sandbox cannot listen (port in use, bad host) or is not running."""


class SandboxServer:
    """Owns the listening socket, the serving thread and the sandbox's state.

    The control methods (``script``, ``set_faults``, ...) are those of the admin endpoints
    under ``/__sandbox__/``; they may be called from any thread while serving.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.state = SandboxState(self.config)
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Listen and serve from a background daemon thread; returns once listening."""
        if self._thread is not None:
            return self
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(POLL_SECONDS,), name="sandbox-http", daemon=True
        )
        self._thread.start()
        self._start_ticker()
        return self

    def serve_forever(self) -> None:
        """Listen (if not yet) and serve in the calling thread until ``stop`` from another."""
        httpd = self._bind()
        self._start_ticker()
        httpd.serve_forever(POLL_SECONDS)

    def _start_ticker(self) -> None:
        """Fire due hosted schedules once a second, even when nobody calls."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="sandbox-clock", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self.state.closing.wait(TICK_SECONDS):
            try:
                scheduler.fire_due(self.state)
            except Exception:
                log.exception("the sandbox failed to fire due schedules")

    def stop(self) -> None:
        """Stop serving, drop open connections (held ones too) and close the socket."""
        self.state.closing.set()
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            if thread is not None:
                httpd.shutdown()
                thread.join(timeout=5)
            httpd.drop_connections()
            httpd.server_close()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.join(timeout=5)
        self.state.webhooks.stop()

    def _bind(self) -> SandboxHTTPServer:
        if self._httpd is not None:
            return self._httpd
        self.state.closing.clear()
        try:
            self._httpd = SandboxHTTPServer(self.config.host, self.config.port, self.state)
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise SandboxError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        return self._httpd

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the base URL to give a PortOne client."""
        if self._httpd is None:
            raise SandboxError("the sandbox is not listening (call start() first)")
        host = self._httpd.server_name
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._httpd.server_port}"

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- controls (same as /__sandbox__/...) -------------------------------------------------

    def script(self, customer_uid: str | None, behaviors: Iterable[str]) -> None:
        """Queue behaviors for ``customer_uid``'s next ``again`` calls (None: global queue)."""
        self.state.script(customer_uid, behaviors)

    def set_default(self, customer_uid: str | None, behavior: str) -> None:
        """What ``customer_uid``'s calls do once its queue is empty (None: global default)."""
        self.state.set_default(customer_uid, behavior)

    def set_faults(self, faults: Mapping[str, object], seed: int | None = None) -> None:
        """Probabilities of faults for unscripted ``again`` calls, rolled with ``seed``."""
        self.state.set_faults(faults, seed)

    def set_latency(self, ms: int) -> None:
        """Milliseconds added before every PortOne call is processed."""
        self.state.set_latency(ms)

    def expire_tokens(self) -> None:
        """Every issued token answers 401 from now on."""
        self.state.expire_tokens()

    def ledger(self) -> list[JSONObject]:
        """Every payment as a PortOne Payment object, in creation order."""
        return self.state.ledger_json()

    def stats(self) -> dict[str, dict[str, int]]:
        """``{"requests": {endpoint: n}, "faults": {kind: n}, "payments": {status: n}}``."""
        return self.state.stats()

    def reset(self) -> None:
        """Clear ledger, customers, scripts, faults, latency, tokens and counters."""
        self.state.reset()

    def set_clock(self, now: int | None = None, advance: int | None = None) -> int:
        """Move the sandbox clock to ``now`` (unix seconds) or ``advance`` seconds on, then fire
        the hosted schedules that fell due (as ``POST /__sandbox__/clock``); answers now."""
        moved = self.state.move_clock(now, advance)
        scheduler.fire_due(self.state)
        return moved

    def now(self) -> int:
        """The sandbox clock (real time until ``set_clock`` set it; then where it was set)."""
        return self.state.now()

    def register_customer(
        self, customer_uid: str, card_number: str = "4111111111111111", **details: str
    ) -> JSONObject:
        """Issue a billing key (see ``SandboxState.register_customer``)."""
        return self.state.register_customer(customer_uid, card_number, **details)
