"""Page timings of the operator console (`/ops` of `billing serve`) on a large database.

Run on the idle step's database (N subscriptions imported): 60 days of paid and failed
charges are added (``CHARGES_PER_DAY`` a day, for the overview's chart and figures) and
``EVENTS`` events for one subscription (its timeline), then the overview and that
subscription's page are fetched ``TIMES`` times each over loopback HTTP; the median and the
slowest are printed. Figures only: the machine is shared.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from bench.run import Bench

CHARGES_PER_DAY = 2000
DAYS = 60
EVENTS = 1000
TIMES = 10
USER, PASSWORD = "bench", "bench-ops-password"
LISTENING = re.compile(rb"listening on (\S+)")

CHARGES = text(
    """
    INSERT INTO charges (subscription_id, period_no, attempt, merchant_uid, customer_uid,
        plan_id, plan_version, name, amount, period_start, period_end, status, fail_reason,
        sends, refunded_amount, lookups, paid_at, created_at, updated_at)
    SELECT s.id, 1000 + d, 1, 'bench-' || s.id || '-' || d, 'bench', s.plan_id, 1, 'bench',
        9900, now() - make_interval(days => d), now() - make_interval(days => d - 30),
        CASE WHEN s.id % 10 = 0 THEN 'failed' ELSE 'paid' END,
        CASE WHEN s.id % 10 = 0 THEN '잔액부족' END, 1, 0, 0,
        CASE WHEN s.id % 10 = 0 THEN NULL ELSE now() - make_interval(days => d) END,
        now() - make_interval(days => d), now()
    FROM generate_series(1, :days) AS d
    JOIN subscriptions s ON s.id <= :per_day
    """
)
EVENTS_SQL = text(
    """
    INSERT INTO events (subscription_id, kind, data, occurred_at, recorded_at)
    SELECT 1, 'bench_note', json_build_object('n', n), now() - make_interval(mins => n), now()
    FROM generate_series(1, :events) AS n
    """
)


@dataclass
class PageTimes:
    subscriptions: int
    charges: int
    overview_ms: tuple[float, float]  # median, slowest
    subscription_ms: tuple[float, float]


def page_times(bench: Bench, env: dict[str, str], size: int) -> PageTimes:
    engine = create_engine(env["BILLING_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(CHARGES, {"days": DAYS, "per_day": CHARGES_PER_DAY})
        connection.execute(EVENTS_SQL, {"events": EVENTS})
        connection.execute(text("ANALYZE"))
    engine.dispose()
    served = {**env, "BILLING_OPS_AUTH": f"{USER}:{PASSWORD}"}
    command = [sys.executable, "-m", "billing", "serve", "--port", "0"]
    server = bench.spawn(f"serve-ops-{size}", command, served)
    try:
        match = LISTENING.search(server.wait_for(b"listening on ", 60))
        assert match is not None
        url = "http://" + match.group(1).decode().removeprefix("http://")
        with httpx.Client(base_url=url, auth=(USER, PASSWORD), timeout=120) as client:
            overview = _timed(client, "/ops/")
            subscription = _timed(client, "/ops/subscriptions/1")
    finally:
        server.stop()
    return PageTimes(size, CHARGES_PER_DAY * DAYS, overview, subscription)


def _timed(client: httpx.Client, path: str) -> tuple[float, float]:
    client.get(path).raise_for_status()  # warm: templates compiled, connections open
    times = []
    for _ in range(TIMES):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times), max(times)


def render(pages: list[PageTimes]) -> list[str]:
    lines = ["", f"Operator console pages ({TIMES} fetches each, median / slowest; target < 1 s)"]
    for page in pages:
        lines.append(
            f"  {page.subscriptions:>9,} subscriptions, {page.charges:,} charges: overview "
            f"{page.overview_ms[0]:,.0f} / {page.overview_ms[1]:,.0f} ms; a subscription with "
            f"{EVENTS:,} events {page.subscription_ms[0]:,.0f} / {page.subscription_ms[1]:,.0f} ms"
        )
    return lines
