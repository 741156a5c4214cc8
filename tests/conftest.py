"""Shared fixtures. Tests talk to the real PostgreSQL on this machine: every test run gets a
database of its own (created here, dropped at the end), and every test starts from empty
tables in it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from billing.app import App, build_app
from billing.clock import Clocks, FixedClock
from billing.config import load_settings
from billing.db import migrate
from billing.db.engine import make_engine
from billing.db.tables import Base

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "BILLING_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def create_database(prefix: str = "billing_test") -> str:
    """CREATE a new empty database; returns its URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _require_postgres() -> None:
    """Skip (with the reason) the tests that need PostgreSQL when there is none to reach."""
    try:
        engine = create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        pytest.skip(f"needs PostgreSQL at {make_url(ADMIN_URL).render_as_string()}: {reason}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """This run's own PostgreSQL database, migrated to head."""
    _require_postgres()
    url = create_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database (no schema) for one test."""
    _require_postgres()
    url = create_database("billing_fresh")
    yield url
    drop_database(url)


@pytest.fixture
def db_url(pg_url: str) -> str:
    """The run's database with every table emptied (sequences restarted)."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_url


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    built = build_app(load_settings({"BILLING_DATABASE_URL": db_url}))
    built.clocks = Clocks(FixedClock(NOW), built.clocks.system)
    yield built
    built.close()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> CliRunner:
    return CliRunner({"BILLING_DATABASE_URL": db_url}, tmp_path)


class CliRunner:
    """Runs ``python -m billing`` in a subprocess, as a user would."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        base["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, "-m", "billing", *args],
            env={**base, **self.env, **(env or {})},
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)


def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: to prove that a refused command changed nothing."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = {
            table.name: sorted(map(tuple, connection.execute(table.select()).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    return rows


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database index of this test process's own; only that index is ever flushed.

    Test runs (and xdist workers) share the machine's Redis: each claims a free index with a
    lock key in database 0, so that no other run's worker ever takes this run's tasks.
    """
    import redis

    locks = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    owner = f"{os.getpid()}-{secrets.token_hex(4)}"
    for index in range(4, 16):
        if locks.set(f"billing-tests:db:{index}", owner, nx=True, ex=3 * 3600):
            break
    else:
        pytest.skip("no free Redis database index for this test run")
    url = f"redis://127.0.0.1:6379/{index}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()
    if locks.get(f"billing-tests:db:{index}") == owner.encode():
        locks.delete(f"billing-tests:db:{index}")
