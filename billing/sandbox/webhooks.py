"""Webhooks (notice_url): PortOne-style ``{imp_uid, merchant_uid, status}`` POSTs, sent best
effort from one background thread so that no request ever waits for them; each sent again
``retries`` times, ``retry_seconds`` apart (PortOne repeats a notice up to 4 times a minute
apart when the merchant asks it to)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request

log = logging.getLogger("billing.sandbox.webhooks")

TIMEOUT_SECONDS = 2.0
RETRIES_MAX = 4  # five sends in all
QUEUE_LIMIT = 10_000
Notice = tuple[str, bytes]


class WebhookSender:
    """Owns the delivery thread and its queue; ``notify`` never blocks."""

    def __init__(
        self, timeout: float = TIMEOUT_SECONDS, retries: int = 0, retry_seconds: float = 60.0
    ) -> None:
        if not 0 <= retries <= RETRIES_MAX:
            raise ValueError(f"notice retries: 0 to {RETRIES_MAX}")
        self._timeout = timeout
        self._retries = retries
        self._retry_seconds = retry_seconds
        self._timers: list[threading.Timer] = []
        self._queue: queue.Queue[Notice | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def notify(self, url: str, imp_uid: str, merchant_uid: str, status: str) -> None:
        """Queue one notice; dropped (and logged) when the queue is full or not http(s)."""
        if not url.startswith(("http://", "https://")):
            log.info("webhook url is not http(s), skipped", extra={"action": "webhook_skip"})
            return
        body = json.dumps({"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": status})
        self._ensure_thread()
        notice = (url, body.encode())
        self._enqueue(notice)
        for attempt in range(1, self._retries + 1):
            timer = threading.Timer(self._retry_seconds * attempt, self._enqueue, (notice,))
            timer.daemon = True
            with self._lock:
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()

    def _enqueue(self, notice: Notice) -> None:
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            log.warning("webhook queue full, notice dropped", extra={"action": "webhook_drop"})

    def stop(self) -> None:
        """Stop after the notices already queued (the thread is a daemon: it never holds exit)."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            if self._thread is not None:
                self._queue.put(None)
                self._thread = None

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-webhooks", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while (notice := self._queue.get()) is not None:
            self._post(*notice)

    def _post(self, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310  (http(s) only: see notify)
                response.read()
        except Exception as exc:  # best effort: a receiver's failure is its own
            log.info("webhook to %s failed: %s", url, exc, extra={"action": "webhook_failed"})
