"""Engines and sessions. Built by the composition root, never at import time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from billing.db.capacity import PGBOUNCER, application_name

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(raw: str) -> URL:
    """Parse a database URL; ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(raw_url: str, pool_size: int = 5, *, pgbouncer: bool = False) -> Engine:
    """An engine whose pool fits ``pool_size`` concurrent users (a worker's concurrency).

    ``pgbouncer`` (BILLING_DATABASE_PGBOUNCER): the URL points at PgBouncer in transaction
    mode, where consecutive transactions of one client connection may run on different server
    connections. psycopg then must not prepare statements: after ``prepare_threshold``
    executions it names one ``_pg3_0`` on whichever server connection it has at that moment,
    and the next use fails with ``prepared statement "_pg3_0" does not exist`` (another
    server) or ``already exists`` (another client's, same server). Nothing else the product
    does needs a session: ``SET LOCAL``, ``pg_advisory_xact_lock`` and ``FOR UPDATE`` all end
    with their transaction, and it uses no LISTEN, temporary tables or WITH HOLD cursors.
    """
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    overflow = pool_overflow(pool_size)
    connect_args: dict[str, Any] = {
        "connect_timeout": 10,
        "application_name": application_name(pool_size + overflow),
    }
    if pgbouncer:
        connect_args["prepare_threshold"] = None
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=overflow,
        # No pre-ping: it costs a round trip per checkout. A connection that died with its
        # server fails one statement; the pool is then invalidated and the caller retries.
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_timeout=30,
        connect_args=connect_args,
        execution_options={PGBOUNCER: True} if pgbouncer else {},
    )


def pool_overflow(pool_size: int) -> int:
    """Connections a pool of ``pool_size`` may open beyond it, in a burst."""
    return max(2, pool_size // 4)


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that BEGIN IMMEDIATE below
    # takes the write lock up front: SQLite has no SELECT ... FOR UPDATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    sessions = sessionmaker(engine, expire_on_commit=False)
    event.listen(sessions, "do_orm_execute", _reread_locked_rows)
    return sessions


def _reread_locked_rows(state: ORMExecuteState) -> None:
    """A row locked FOR UPDATE is read as it is now, also when this session already holds
    the object: SQLAlchemy would otherwise keep the values it first read, from before a
    commit that the lock waited for (a pause once wrote "paused" over a cancel that way).

    Not inside ``no_autoflush``: there the session may hold changes not yet flushed, which
    a re-read would discard; code that writes there locks its rows before it changes them
    (``finish_charges``). With autoflush on, the changes are flushed before the select."""
    if state.is_select and state.session.autoflush and _locks(state.statement):
        state.update_execution_options(populate_existing=True)


def _locks(statement: Any) -> bool:
    return getattr(statement, "_for_update_arg", None) is not None


def is_outage(exc: BaseException) -> bool:
    """True for an error that says the database could not be used just now (connection
    lost, server restarting, pool exhausted, deadlock, serialization failure): worth trying
    again. Any other database error is about the data, and trying again gives the same."""
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
