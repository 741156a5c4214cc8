"""``python -m bench.footprint``: what one subscription, one charge and one queued message cost.

The figures behind docs/performance.md, "Beyond one machine". On the PostgreSQL of this
machine (``--admin-url``) it creates a scratch database, migrates it, imports N subscriptions
due at once and bills them for ``--months`` months with the product's own scheduler and worker
in one process (the embedded runtime: in-process broker, the bundled sandbox over HTTP). Then:

- per table (subscriptions, charges, events, customers, notices): rows, and bytes of heap,
  indexes and in all (``pg_total_relation_size``), as billing left them and after ``VACUUM
  FULL``, divided by the rows;
- per charge: transactions committed, rows inserted and updated (``pg_stat_database`` of the
  scratch database) and WAL bytes (``pg_current_wal_lsn``, server-wide: other work on the
  server is counted too);
- on Redis, a scratch database index (``--redis-db``, claimed like the tests' indexes and the
  only one ever flushed): ``INFO memory`` and ``MEMORY USAGE`` of the queue before and after
  publishing ``--messages`` real ``billing.charge`` messages, one charge id each and then 16
  (the scheduler's batches).

The scratch database is dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import Connection, Engine, create_engine, event, func, select, table, text
from sqlalchemy.engine import make_url

from billing.app import App, build_app
from billing.broker import CHARGE_BATCH, QUEUE, CeleryPublisher, publisher_app
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import Settings, load_settings
from billing.db import migrate
from billing.db.engine import make_engine
from billing.embedded import Embedded
from billing.services import plan_store
from billing.services.imports import import_file
from billing.services.status import outstanding

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)  # 09:00 in Seoul
CATALOG = "plans:\n  - {id: monthly, name: 월간, amount: 9900, interval: 1 month}\n"
TABLES = ("subscriptions", "charges", "events", "customers", "notices")
FIRST_ID = 10_000_000  # charge ids of an 8-digit table, as at 10 million subscriptions


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    heap: int
    indexes: int
    total: int

    def per_row(self, size: int) -> float:
        return size / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Counters:
    commits: int
    inserted: int
    updated: int
    wal: int  # bytes, server-wide


@dataclass(frozen=True)
class Billed:
    before: Counters
    after: Counters
    seconds: float
    in_transactions: float  # seconds, summed over every connection
    transactions: int


@dataclass(frozen=True)
class QueueCost:
    messages: int
    ids_per_message: int
    used_memory: int  # INFO memory, delta
    queue_bytes: int  # MEMORY USAGE of the queue's list


class TransactionClock:
    """Seconds spent inside transactions by every engine of this process (the scheduler's and
    the worker's): behind PgBouncer in transaction mode, a server connection is taken only for
    that long, so their sum over the wall time is how many server connections were busy."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.transactions = 0

    def install(self) -> None:
        event.listen(Engine, "begin", self._begin)
        event.listen(Engine, "commit", self._end)
        event.listen(Engine, "rollback", self._end)

    def remove(self) -> None:
        event.remove(Engine, "begin", self._begin)
        event.remove(Engine, "commit", self._end)
        event.remove(Engine, "rollback", self._end)

    def _begin(self, connection: Connection) -> None:
        connection.info["footprint_began"] = time.perf_counter()

    def _end(self, connection: Connection) -> None:
        began = connection.info.pop("footprint_began", None)
        if began is not None:
            self.seconds += time.perf_counter() - began
            self.transactions += 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--subscriptions", type=int, default=5000, help="default 5000")
    parser.add_argument("--months", type=int, default=2, help="billing months (default 2)")
    parser.add_argument("--messages", type=int, default=10_000, help="default 10000")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="Redis server")
    parser.add_argument("--redis-db", type=int, default=13, help="scratch index (default 13)")
    parser.add_argument("--admin-url", default=os.environ.get("BILLING_TEST_POSTGRES", ADMIN_URL))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args(argv)
    if min(options.subscriptions, options.months, options.messages) < 1:
        parser.error("--subscriptions, --months and --messages must be at least 1")
    if not 1 <= options.redis_db <= 15:
        parser.error("--redis-db must be 1 to 15 (0 holds the tests' locks)")
    return options


@contextmanager
def scratch_database(admin_url: str, keep: bool) -> Iterator[str]:
    name = f"billing_footprint_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if keep:
            print(f"kept the scratch database {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(settings: Settings, subscriptions: int) -> None:
    """Migrate, load the catalog, set the test clock and import subscriptions due at START."""
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    app = build_app(settings)
    assert isinstance(app.clocks.billing, DatabaseClock)
    app.clocks.billing.set(START)
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "footprint.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "footprint.yaml", "footprint", START)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "subscriptions.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["customer_uid", "plan_id", "start", "email"])
            for n in range(subscriptions):
                uid = f"cust-{n:08d}"
                writer.writerow([uid, "monthly", START.isoformat(), f"{uid}@example.com"])
        with app.transaction() as session:
            import_file(session, path, START)
    app.close()


def bill(settings: Settings, months: int) -> Billed:
    """Bill ``months`` renewals of every subscription: counters before and after, the seconds
    it took and the time spent inside transactions."""
    embedded = Embedded(settings, concurrency=8)
    clock = TransactionClock()
    clock.install()
    embedded.start(scheduler_interval=0.2)
    try:
        app = embedded.app
        assert isinstance(app.clocks.billing, DatabaseClock)
        before = counters(app.engine)
        clock.seconds, clock.transactions, began = 0.0, 0, time.monotonic()
        for month in range(months):
            if month:
                app.clocks.billing.set(START + timedelta(days=31 * month + 1))
            settle(app)
        took = time.monotonic() - began
        return Billed(before, counters(app.engine), took, clock.seconds, clock.transactions)
    finally:
        embedded.stop()
        clock.remove()


def settle(app: App, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.transaction() as session:
            if outstanding(session, app.clocks.billing.now()).total == 0:
                return
        time.sleep(0.5)
    raise SystemExit(f"footprint: billing did not settle within {timeout:g} s")


def counters(engine: Engine) -> Counters:
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()
        time.sleep(1.1)  # statistics of other backends reach the shared view within a second
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = connection.execute(
            text(
                "SELECT xact_commit, tup_inserted, tup_updated, "
                "pg_current_wal_lsn() - '0/0'::pg_lsn FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
    return Counters(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def sizes(connection: Connection) -> list[TableSize]:
    found = []
    for name in TABLES:
        count = select(func.count()).select_from(table(name))
        rows = int(connection.execute(count).scalar_one())
        heap, indexes, total = connection.execute(
            text("SELECT pg_relation_size(:t), pg_indexes_size(:t), pg_total_relation_size(:t)"),
            {"t": name},
        ).one()
        found.append(TableSize(name, rows, int(heap), int(indexes), int(total)))
    return found


def measure_tables(url: str) -> tuple[list[TableSize], list[TableSize], dict[str, int]]:
    """Sizes as billing left the tables, then after VACUUM FULL (dead versions gone), and the
    events by kind."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        kinds = text("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY 2 DESC")
        events = {str(kind): int(n) for kind, n in connection.execute(kinds)}
        connection.execute(text("VACUUM ANALYZE"))
        left = sizes(connection)
        connection.execute(text("VACUUM FULL"))
        compact = sizes(connection)
    engine.dispose()
    return left, compact, events


@contextmanager
def scratch_redis(server: str, index: int) -> Iterator[redis.Redis]:
    """Redis database ``index``, claimed with the tests' lock key so that no test run takes it
    meanwhile; flushed before and after, and nothing else is."""
    locks = redis.Redis.from_url(f"{server}/0")
    owner = f"footprint-{os.getpid()}"
    if not locks.set(f"billing-tests:db:{index}", owner, nx=True, ex=3600):
        raise SystemExit(f"footprint: Redis database {index} is in use by a test run: --redis-db")
    client = redis.Redis.from_url(f"{server}/{index}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        if locks.get(f"billing-tests:db:{index}") == owner.encode():
            locks.delete(f"billing-tests:db:{index}")


def queue_cost(client: redis.Redis, url: str, messages: int, per_message: int) -> QueueCost:
    """Publish ``messages`` real billing.charge messages of ``per_message`` ids each (1 or
    CHARGE_BATCH)."""
    settings = load_settings({"BILLING_BROKER_URL": url, "BILLING_SANDBOX": "1"})
    celery = publisher_app(settings)
    publisher = CeleryPublisher(celery)
    client.flushdb()
    before = _used_memory(client)
    ids = list(range(FIRST_ID, FIRST_ID + messages * per_message))
    if per_message == 1:
        for one in ids:
            publisher.charge([one])
    else:  # the scheduler's way: CeleryPublisher cuts the ids into messages of CHARGE_BATCH
        for start in range(0, len(ids), CHARGE_BATCH * 500):
            publisher.charge(ids[start : start + CHARGE_BATCH * 500])
    assert client.llen(QUEUE) == messages, client.llen(QUEUE)
    after = _used_memory(client)
    queue = int(client.memory_usage(QUEUE, samples=0) or 0)
    celery.close()
    client.flushdb()
    return QueueCost(messages, per_message, after - before, queue)


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def report(
    options: argparse.Namespace,
    tables: tuple[list[TableSize], list[TableSize], dict[str, int]],
    billed: Billed,
    queues: list[QueueCost],
) -> None:
    left, compact, kinds = tables
    took = billed.seconds
    charges = next(t.rows for t in left if t.name == "charges")
    print(
        f"{options.subscriptions:,} subscriptions billed for {options.months} month(s): "
        f"{charges:,} charges in {took:.1f} s (embedded: 8 threads, in-process broker)"
    )
    print("\nPostgreSQL, bytes per row (as billing left the table / after VACUUM FULL):")
    print(f"  {'table':<14}{'rows':>9}{'heap':>14}{'indexes':>16}{'total':>16}")
    for lt, ct in zip(left, compact, strict=True):
        cells = [
            f"{lt.per_row(a):>6.0f} / {ct.per_row(b):<5.0f}"
            for a, b in ((lt.heap, ct.heap), (lt.indexes, ct.indexes), (lt.total, ct.total))
        ]
        print(f"  {lt.name:<14}{lt.rows:>9,}  {'  '.join(cells)}")
    events = next(t.rows for t in left if t.name == "events")
    print(f"  events per charge: {events / charges:.2f}" if charges else "  no charges")
    print("  events by kind: " + ", ".join(f"{kind} {n:,}" for kind, n in kinds.items()))
    if charges:
        _per_charge(billed, charges)
    print("\nRedis, the queue of billing.charge messages:")
    for cost in queues:
        print(
            f"  {cost.messages:,} messages of {cost.ids_per_message} id(s): used_memory "
            f"+{cost.used_memory / cost.messages:,.0f} B per message, queue "
            f"{cost.queue_bytes / cost.messages:,.0f} B per message, "
            f"{cost.used_memory / (cost.messages * cost.ids_per_message):,.0f} B per charge"
        )
    _at_ten_million(left, compact, queues, events / charges if charges else 0.0)


def _per_charge(billed: Billed, charges: int) -> None:
    before, after = billed.before, billed.after
    commits = (after.commits - before.commits) / charges
    inserted = (after.inserted - before.inserted) / charges
    updated = (after.updated - before.updated) / charges
    wal = (after.wal - before.wal) / charges
    print(
        f"  per charge billed: {commits:.2f} commits, {inserted:.2f} rows inserted, "
        f"{updated:.2f} updated, {wal:,.0f} B of WAL (server-wide)"
    )
    busy = billed.in_transactions / billed.seconds
    print(
        f"  inside transactions: {billed.in_transactions * 1000 / charges:.2f} ms per charge "
        f"({billed.transactions / charges:.2f} transactions, every engine of the process); "
        f"{busy:.2f} connections busy on average at {charges / billed.seconds:.0f} charges/s"
    )


def _at_ten_million(
    left: list[TableSize], compact: list[TableSize], queues: list[QueueCost], events: float
) -> None:
    ten = 10_000_000
    low, high = _gib(compact, events, ten), _gib(left, events, ten)
    batch = next((q for q in queues if q.ids_per_message == CHARGE_BATCH), queues[-1])
    backlog = batch.used_memory / (batch.messages * batch.ids_per_message) * ten
    print("\nAt 10,000,000 subscriptions (scaled from the figures above; compact - as left):")
    print(
        f"  subscriptions + customers: {low[0]:.1f} - {high[0]:.1f} GiB; each month of "
        f"charges and their events: {low[1]:.1f} - {high[1]:.1f} GiB"
    )
    print(
        f"  a backlog of 10,000,000 charges in Redis: {backlog / 2**30:.2f} GiB in batches "
        f"of {batch.ids_per_message}"
    )


def _gib(tables: list[TableSize], events_per_charge: float, count: int) -> tuple[float, float]:
    """(subscriptions and customers, one month of charges and events) for ``count``
    subscriptions, in GiB."""
    found = {t.name: t for t in tables}
    base = sum(found[n].per_row(found[n].total) for n in ("subscriptions", "customers"))
    month = found["charges"].per_row(found["charges"].total)
    month += found["events"].per_row(found["events"].total) * events_per_charge
    return base * count / 2**30, month * count / 2**30


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    broker = f"{options.redis_url}/{options.redis_db}"
    with scratch_redis(options.redis_url, options.redis_db) as client:
        queues = [queue_cost(client, broker, options.messages, n) for n in (1, CHARGE_BATCH)]
    with scratch_database(options.admin_url, options.keep) as url:
        settings = load_settings({"BILLING_DATABASE_URL": url, "BILLING_SANDBOX": "1"})
        prepare(settings, options.subscriptions)
        billed = bill(settings, options.months)
        tables = measure_tables(url)
    report(options, tables, billed, queues)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
