"""The composition root: builds every dependency from Settings. Nothing here runs at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing.clock import Clock, DatabaseClock, SystemClock
from billing.config import DEFAULT_PORTONE_URL, SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, Settings
from billing.db import migrate
from billing.db.engine import make_engine, make_sessions
from billing.errors import BillingError, ConfigError
from billing.portone.client import PortOneClient


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock

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
    engine = make_engine(settings.database_url, pool_size=pool_size)
    sessions = make_sessions(engine)
    clock: Clock = DatabaseClock(sessions) if settings.sandbox_mode else SystemClock()
    app = App(settings, engine, sessions, clock)
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


def make_gateway(settings: Settings, connections: int, url: str | None = None) -> PortOneClient:
    """The PortOne client, or a one-line refusal when charging is not allowed.

    Real money needs credentials and no sandbox mode. Sandbox mode never reaches
    api.iamport.kr: it charges BILLING_PORTONE_URL, or ``url`` (the bundled sandbox of
    ``billing run`` and ``billing demo``).
    """
    target = url or settings.portone_url
    key = settings.imp_key.get_secret_value() if settings.imp_key else None
    secret = settings.imp_secret.get_secret_value() if settings.imp_secret else None
    if settings.sandbox_mode:
        if target is None:
            raise ConfigError(
                "BILLING_PORTONE_URL: sandbox mode needs a sandbox to charge: run `billing "
                "sandbox` and point BILLING_PORTONE_URL at it (or use `billing run`)"
            )
        key, secret = key or SANDBOX_IMP_KEY, secret or SANDBOX_IMP_SECRET
    elif key is None or secret is None:
        raise ConfigError(
            "BILLING_PORTONE_IMP_KEY: no PortOne credentials, so nothing is charged: set "
            "BILLING_PORTONE_IMP_KEY and BILLING_PORTONE_IMP_SECRET, or BILLING_SANDBOX=1"
        )
    return PortOneClient(
        target or DEFAULT_PORTONE_URL,
        key,
        secret,
        timeout=settings.portone_timeout,
        max_connections=connections,
    )
