"""The product through PgBouncer in transaction mode (BILLING_DATABASE_PGBOUNCER).

A real ``pgbouncer`` process of the test's own (its config in a temporary directory, a free
port, never the system service) sits between the product and this test's database. The
migrations, the scheduler, a real Celery worker and the sandbox over HTTP run through it, on
fewer server connections than the product opens client connections, so that consecutive
transactions of one client do run on different server connections.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from billing.db.engine import make_engine
from billing.sandbox import SandboxServer
from tests.conftest import ADMIN_URL
from tests.integration.conftest import START, Product
from tests.processes import ROOT, die_with_parent, product_env, wait_for

BINARY = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
SERVER_CONNECTIONS = 2  # PgBouncer's pool for the product: fewer than the product's clients
VERSION = re.compile(rb"PgBouncer ([0-9]+)\.([0-9]+)")

pytestmark = pytest.mark.skipif(
    BINARY is None, reason="needs the pgbouncer binary (apt-get install pgbouncer; .ci/run does)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tracks_prepared_statements(binary: str) -> bool:
    """PgBouncer 1.21 and newer can track protocol-level prepared statements."""
    done = subprocess.run([binary, "--version"], capture_output=True, check=False)
    found = VERSION.search(done.stdout)
    return found is not None and (int(found.group(1)), int(found.group(2))) >= (1, 21)


class PgBouncer:
    """One ``pgbouncer`` process in transaction mode in front of one database of this run."""

    def __init__(self, database_url: str, pool_size: int) -> None:
        assert BINARY is not None
        self.binary = BINARY
        self.target = make_url(database_url)
        self.pool_size = pool_size
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="billing-pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The database's URL with PgBouncer's port: what the product is given."""
        return self.target.set(port=self.port).render_as_string(hide_password=False)

    def start(self) -> PgBouncer:
        self._write_config()
        command = [self.binary, *self._as_user(), str(self.dir / "pgbouncer.ini")]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (one system call, see tests.processes)
        )
        wait_for(lambda: self._answers() or self._exited(), 20, "pgbouncer to accept")
        assert not self._exited(), self.log.read_text() if self.log.exists() else "no log"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _as_user(self) -> list[str]:
        """PgBouncer refuses to run as root: then it runs as the postgres user."""
        if os.geteuid() != 0:
            return []
        user = pwd.getpwnam("postgres")
        for path in (self.dir, *self.dir.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        return ["-u", "postgres"]

    def _write_config(self) -> None:
        name, user = self.target.database, self.target.username or "postgres"
        host, port = self.target.host or "127.0.0.1", self.target.port or 5432
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        # Keep the failure reproducible on a PgBouncer that could track prepared statements.
        tracking = (
            "max_prepared_statements = 0\n" if _tracks_prepared_statements(self.binary) else ""
        )
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n{name} = host={host} port={port} dbname={name} user={user}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            f"max_client_conn = 200\nlogfile = {self.log}\n{tracking}"
        )

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


@pytest.fixture
def bouncer(fresh_pg_url: str) -> Iterator[Callable[[int], PgBouncer]]:
    """Start PgBouncers (transaction mode, a pool of the given size) before this test's own
    empty database; every one is stopped at the end."""
    started: list[PgBouncer] = []

    def start(pool_size: int) -> PgBouncer:
        started.append(PgBouncer(fresh_pg_url, pool_size).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def env(
    bouncer: Callable[[int], PgBouncer], redis_url: str, sandbox: SandboxServer
) -> dict[str, str]:
    """The integration fixtures' environment, the database reached through PgBouncer and
    migrated through it by ``billing db upgrade``."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    environment = {
        "BILLING_DATABASE_URL": bouncer(SERVER_CONNECTIONS).url,
        "BILLING_DATABASE_PGBOUNCER": "1",
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "1",
        "BILLING_RECONCILE_AFTER": "3",
    }
    upgrade = _billing(environment, "db", "upgrade")
    assert upgrade.returncode == 0 and "schema upgraded" in upgrade.stdout, upgrade.stderr
    return environment


def _billing(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing", *args],
        cwd=ROOT,
        env=product_env(environment),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _server_connections(database: str) -> int:
    engine = create_engine(ADMIN_URL)
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
        count = int(connection.execute(query, {"name": database}).scalar_one())
    engine.dispose()
    return count


def test_two_months_of_renewals_through_pgbouncer_are_each_paid_once(product: Product) -> None:
    for n in range(40):
        product.subscribe(f"cust-b{n:02d}", START + timedelta(minutes=n))
    product.sandbox.script(customer_uid="cust-b07", behaviors=["commit_then_timeout"])
    product.settle(timeout=120)
    product.clock.advance(timedelta(days=28, hours=1))  # every second renewal is due
    product.settle(timeout=120)

    charges = product.charges()
    paid = product.paid_at_sandbox()
    assert len(charges) == 80 and {c.status for c in charges} == {"paid"}
    assert sorted(p["merchant_uid"] for p in paid) == sorted(c.merchant_uid for c in charges)
    assert sorted(c.imp_uid for c in charges) == sorted(p["imp_uid"] for p in paid)
    assert product.anomalies() == []
    # The worker (4 threads, a pool of 4 + overflow) and the scheduler shared 2 server
    # connections: transactions of one client did move between server connections.
    database = make_url(product.env["BILLING_DATABASE_URL"]).database
    assert database is not None and _server_connections(database) <= SERVER_CONNECTIONS
    assert "prepared statement" not in product.worker.log.read_text()


def _run_the_same_query_on_two_clients(url: str, *, pgbouncer: bool) -> None:
    """What two worker processes do all day: the same statement, many times each."""
    engines = [make_engine(url, pool_size=1, pgbouncer=pgbouncer) for _ in range(2)]
    try:
        for engine in engines:
            with engine.connect() as connection:
                for _ in range(8):  # psycopg prepares a statement on its 6th execution
                    connection.execute(text("SELECT count(*) FROM pg_class WHERE relpages >= 0"))
                    connection.commit()
    finally:
        for engine in engines:
            engine.dispose()


def test_without_the_setting_psycopg_prepared_statements_break_behind_pgbouncer(
    bouncer: Callable[[int], PgBouncer],
) -> None:
    one_server = bouncer(1)  # both clients' transactions land on one server connection
    with pytest.raises(ProgrammingError, match='prepared statement "_pg3_0" already exists'):
        _run_the_same_query_on_two_clients(one_server.url, pgbouncer=False)


def test_with_the_setting_the_same_clients_work_behind_pgbouncer(
    bouncer: Callable[[int], PgBouncer],
) -> None:
    one_server = bouncer(1)
    _run_the_same_query_on_two_clients(one_server.url, pgbouncer=True)
