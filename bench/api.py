"""Requests per second of the merchant's HTTP API (`billing serve`, one process, as shipped).

``PUT /v1/customers/{customer_uid}`` (a new customer each), ``POST /v1/subscriptions`` (each
with its own Idempotency-Key, so each is a new subscription: the key row, the subscription,
its event and the stored answer in one request) and ``GET /v1/charges`` (a page of 100,
newest first, after the real scheduler and workers paid the subscriptions' first charges),
from a pool of client threads on this machine over loopback HTTP. Figures only: the client
shares the machine's two cores with the server and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import create_engine, text

from bench.measure import wait_until

if TYPE_CHECKING:
    from bench.run import Bench

LISTENING = re.compile(rb"listening on (\S+)")


@dataclass
class ApiRate:
    label: str
    requests: int
    clients: int
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def measure(
    label: str, count: int, clients: int, call: Callable[[httpx.Client, int], int]
) -> ApiRate:
    """``count`` calls from ``clients`` threads, one keep-alive connection each."""
    local = [httpx.Client(timeout=60) for _ in range(clients)]
    latencies: list[float] = []
    statuses: list[int] = []

    def one(n: int) -> None:
        begun = time.perf_counter()
        statuses.append(call(local[n % clients], n))
        latencies.append(time.perf_counter() - begun)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    for client in local:
        client.close()
    latencies.sort()
    errors = sum(1 for status in statuses if status >= 400)
    return ApiRate(
        label,
        count,
        clients,
        count / elapsed,
        1000 * latencies[len(latencies) // 2],
        1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        errors,
    )


def api_rates(bench: Bench, count: int, clients: int) -> list[ApiRate]:
    env, _sandbox = bench.environment("api", 0)
    key = json.loads(bench.billing(env, "api-keys", "create", "--name", "bench", "--json"))["key"]
    server = bench.spawn("serve", [sys.executable, "-m", "billing", "serve", "--port", "0"], env)
    match = LISTENING.search(server.wait_for(b"listening on ", 60))
    assert match is not None
    url = "http://" + match.group(1).decode().removeprefix("http://")
    headers = {"Authorization": f"Bearer {key}"}

    def customer(client: httpx.Client, n: int) -> int:
        body = {"name": f"고객 {n}", "email": f"api-{n}@example.com"}
        return client.put(f"{url}/v1/customers/api-{n}", json=body, headers=headers).status_code

    def create(client: httpx.Client, n: int) -> int:
        body = {"customer_uid": f"api-{n}", "plan_id": "basic-monthly"}
        answer = client.post(
            f"{url}/v1/subscriptions",
            json=body,
            headers=headers | {"Idempotency-Key": str(uuid.uuid4())},
        )
        return answer.status_code

    def charges(client: httpx.Client, n: int) -> int:
        return client.get(f"{url}/v1/charges", params={"limit": 100}, headers=headers).status_code

    rates = [
        measure("PUT /v1/customers/{uid}", count, clients, customer),
        measure("POST /v1/subscriptions", count, clients, create),
    ]
    pay_first_periods(bench, env, count)
    rates.append(measure("GET /v1/charges (100 a page)", count, clients, charges))
    server.stop()
    return rates


def pay_first_periods(bench: Bench, env: dict[str, str], count: int) -> None:
    """The real scheduler and workers charge the new subscriptions (so the list has rows)."""
    workers = bench.workers(env, "api", 8)
    scheduler = bench.spawn(
        "scheduler-api", [sys.executable, "-m", "billing", "scheduler", "--interval", "0.2"], env
    )
    engine = create_engine(env["BILLING_DATABASE_URL"])
    query = text("SELECT count(*) FROM charges WHERE status = 'paid'")
    try:
        with engine.connect() as connection:
            paid = wait_until(
                lambda: connection.execute(query).scalar_one() >= count, count / 5 + 120
            )
        if not paid:
            raise RuntimeError("api: the new subscriptions' first charges were not paid in time")
    finally:
        engine.dispose()
        for process in (scheduler, *workers):
            process.stop()


def render(rates: list[ApiRate]) -> list[str]:
    lines = ["", "HTTP API (billing serve, one process; client threads on the same machine)"]
    for rate in rates:
        lines.append(
            f"  {rate.label:32} {rate.requests:>6} requests, {rate.clients} clients: "
            f"{rate.per_s:7.1f}/s, p50 {rate.p50_ms:6.1f} ms, p99 {rate.p99_ms:6.1f} ms, "
            f"errors {rate.errors}"
        )
    return lines
