"""How many connections the product's pools may open, against the server's max_connections.

Every engine names its connections ``billing <host> <pid> pool=<N>`` (application_name), N
being the most that pool opens (pool_size + max_overflow). Summing N over the processes seen
in ``pg_stat_activity`` tells whether the pools together could exhaust the server: then a
burst ends in "too many clients already". A worker checks it when it builds its pool and
logs a warning; ``billing status`` shows it.

Behind PgBouncer (BILLING_DATABASE_PGBOUNCER) the pools open client connections to PgBouncer,
which opens at most its own pool size to PostgreSQL, and ``pg_stat_activity`` shows each
server connection under the name of the last client that used it: the sum says nothing, so
it is not made (PgBouncer's ``max_client_conn`` and ``SHOW POOLS`` are the figures there).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

PREFIX = "billing "
PGBOUNCER = "billing_pgbouncer"  # an engine's execution option: its URL points at PgBouncer
_POOL = re.compile(r" pool=([0-9]+)$")


def application_name(pool_capacity: int) -> str:
    host = socket.gethostname()[:24]
    return f"{PREFIX}{host} {os.getpid()} pool={pool_capacity}"


@dataclass(frozen=True)
class Capacity:
    max_connections: int
    reserved: int  # superuser_reserved_connections
    open_connections: int
    pools: int  # what every billing pool seen now could open together

    @property
    def usable(self) -> int:
        return self.max_connections - self.reserved

    @property
    def warning(self) -> str | None:
        if self.pools <= self.usable:
            return None
        return (
            f"the billing pools could open {self.pools} connections but PostgreSQL allows "
            f"{self.usable} (max_connections {self.max_connections} - {self.reserved} reserved): "
            "raise max_connections or lower the workers' concurrency (-c)"
        )


LIMITS = text(
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int"
)
SESSIONS = text("SELECT application_name, count(*) FROM pg_stat_activity GROUP BY 1")


def measure(connection: Connection) -> Capacity:
    """The server's limits, its open connections and every billing pool's capacity (the
    pool of ``connection`` included: it is open)."""
    limit, reserved = connection.execute(LIMITS).one()
    names = connection.execute(SESSIONS).all()
    open_connections = sum(int(count) for _name, count in names)
    pools = [_capacity(name) for name, _count in names if (name or "").startswith(PREFIX)]
    return Capacity(int(limit), int(reserved), open_connections, sum(pools))


def _capacity(name: str) -> int:
    found = _POOL.search(name)
    return int(found.group(1)) if found else 1


def measure_engine(engine: Engine) -> Capacity | None:
    """``measure`` on PostgreSQL; None on SQLite, behind PgBouncer, or when the database cannot
    be asked now."""
    if engine.dialect.name != "postgresql" or engine.get_execution_options().get(PGBOUNCER):
        return None
    try:
        with engine.connect() as connection:
            return measure(connection)
    except SQLAlchemyError:
        return None


def check_before_opening(raw_url: str, planned: int, *, pgbouncer: bool = False) -> Capacity | None:
    """What the pools seen now plus ``planned`` more connections (a worker's pool, not open
    yet) could open, asked on one connection of its own; None on SQLite, behind PgBouncer or
    in an outage."""
    from billing.db.engine import normalize_url

    url = normalize_url(raw_url)
    if url.get_backend_name() != "postgresql" or pgbouncer:
        return None
    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"connect_timeout": 5, "application_name": "preflight"},
    )
    try:
        capacity = measure_engine(engine)
    finally:
        engine.dispose()
    if capacity is None:
        return None
    return replace(capacity, pools=capacity.pools + planned)
