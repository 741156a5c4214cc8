"""Counters: requests per endpoint and faults per kind; thread-safe."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Owns the request and fault counters (the payment counts live in the ledger)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"requests": dict(self._requests), "faults": dict(self._faults)}

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
