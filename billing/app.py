"""The application's handle on its stores: settings, the database, and the two clocks.

``App.clocks`` holds the billing clock (the shared test clock in sandbox mode) and the
system clock (the real one) as one ``Clocks``; every service that needs "now" gets it from
there, the same way everywhere (decision record 6: business time and system time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing.clock import Clock, Clocks, DatabaseClock, SystemClock
from billing.config import Settings
from billing.db import migrate
from billing.db.engine import make_engine, make_sessions
from billing.errors import BillingError, ConfigError, DatabaseUnavailable


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clocks: Clocks  # the billing clock and the system clock

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits when the block ends, rolls back on any exception.

        Read the clock before opening it: in sandbox mode the clock is a database read, and
        SQLite allows one writer at a time.
        """
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def build_app(settings: Settings, *, pool_size: int = 5, check_schema: bool = True) -> App:
    engine = make_engine(
        settings.database_url, pool_size=pool_size, pgbouncer=settings.database_pgbouncer
    )
    sessions = make_sessions(engine)
    billing: Clock = DatabaseClock(sessions) if settings.sandbox_mode else SystemClock()
    app = App(settings, engine, sessions, Clocks(billing, SystemClock()))
    if check_schema:
        try:
            prepare_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return app


# What the server or the driver says when BILLING_DATABASE_URL itself is wrong: trying again
# gives the same answer. Anything else (refused, timed out, too many clients, starting up,
# a host name that does not resolve while its container restarts) is an outage to wait out.
WRONG_VALUE = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "invalid connection option",
    "invalid dsn",
    "unable to open database file",
)


def prepare_schema(engine: Engine) -> None:
    """SQLite (the embedded default) is migrated on the spot; PostgreSQL must be at head."""
    try:
        if engine.dialect.name == "sqlite":
            migrate.upgrade(engine)
        else:
            migrate.require_head(engine)
    except OperationalError as exc:
        raise database_error(exc) from None


def database_error(exc: OperationalError) -> BillingError:
    """A wrong BILLING_DATABASE_URL (ConfigError), or an outage (DatabaseUnavailable)."""
    reason = _reason(exc)
    if any(marker in reason for marker in WRONG_VALUE):
        return ConfigError(f"BILLING_DATABASE_URL: the database refuses it: {reason}")
    return DatabaseUnavailable(f"BILLING_DATABASE_URL: cannot reach the database: {reason}")


def _reason(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
