"""The composition root: builds every dependency from Settings. Nothing here runs at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing.clock import Clock, SystemClock
from billing.config import Settings
from billing.db import migrate
from billing.db.engine import make_engine, make_sessions
from billing.errors import BillingError


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits when the block ends, rolls back on any exception."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def build_app(settings: Settings, *, pool_size: int = 5, check_schema: bool = True) -> App:
    engine = make_engine(settings.database_url, pool_size=pool_size)
    app = App(settings, engine, make_sessions(engine), SystemClock())
    if check_schema:
        prepare_schema(engine)
    return app


def prepare_schema(engine: Engine) -> None:
    """SQLite (the embedded default) is migrated on the spot; PostgreSQL must be at head."""
    try:
        if engine.dialect.name == "sqlite":
            migrate.upgrade(engine)
        else:
            migrate.require_head(engine)
    except OperationalError as exc:
        raise BillingError(f"cannot reach the database: {_reason(exc)}") from None


def _reason(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
