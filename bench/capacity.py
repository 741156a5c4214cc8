"""The sandbox's own capacity, measured before the product so that it is not what limits it.

Client processes with a thread pool each (one keep-alive connection per thread) send
`POST /subscribe/payments/again` for fresh merchant_uids, as the workers do, with nothing else
running. The figure is a lower bound: the clients share the machine's two cores with the
sandbox, and it includes the start of every connection.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import httpx

CREDENTIALS = {"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}


def _client_process(url: str, first: int, count: int, threads: int) -> int:
    """Send ``count`` charges from ``threads`` threads with a connection each; return how many
    were paid. One client per thread: httpcore's shared pool would cost more CPU than the
    sandbox being measured."""
    local = threading.local()
    clients: list[httpx.Client] = []
    with httpx.Client(base_url=url) as client:
        token = client.post("/users/getToken", json=CREDENTIALS).json()["response"]
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    def charge(n: int) -> bool:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
            clients.append(local.client)
        body = {
            "customer_uid": f"capacity-{n % 1000}",
            "merchant_uid": f"capacity-{n}",
            "amount": 1000,
            "name": "capacity",
        }
        answer = local.client.post("/subscribe/payments/again", json=body)
        return bool(answer.json()["response"]["status"] == "paid")

    try:
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(charge, range(first, first + count)))
    finally:
        for each in clients:
            each.close()


def sandbox_calls_per_s(url: str, calls: int, processes: int, threads: int) -> tuple[float, int]:
    """(answered calls per second, calls answered paid) for ``calls`` charges in total."""
    share = calls // processes
    started = time.monotonic()
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_client_process, url, n * share, share, threads) for n in range(processes)
        ]
        paid = sum(future.result() for future in futures)
    return share * processes / (time.monotonic() - started), paid
