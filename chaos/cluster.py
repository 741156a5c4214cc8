"""The chaos run's own PostgreSQL cluster and Redis server, which it may kill and restart.

Both live in a temporary directory and listen on spare loopback ports, so that killing them
touches nothing else on the machine. ``initdb`` and ``postgres`` refuse to run as root: as
root, they run as the ``postgres`` OS user (which must exist), on a data directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/pgsql/bin")
PG_USER = "postgres"
READY_TIMEOUT = 60.0


class ClusterError(RuntimeError):
    """A server could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_binary(name: str) -> str:
    """``initdb`` or ``postgres`` from PATH, else from the usual Debian locations."""
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise ClusterError(f"{name} not found on PATH nor in {', '.join(PG_BIN_DIRS)}")


def kill_group(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Signal a process and everything in its process group (it leads its own session)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")  # a zombie waits for an init that may never reap


def process_table() -> list[ProcInfo]:
    """Every process on the machine, from /proc (Linux)."""
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table.append(ProcInfo(int(entry.name), int(fields[1]), int(fields[2]), fields[0]))
    return table


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (PostgreSQL's backends lead sessions of their own, so a
    process-group kill does not reach them)."""
    table = process_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [info.pid for info in table if info.ppid == parent]
        found += children
        frontier += children
    return found


def kill_tree(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGKILL a process, its process group and every descendant at once, then reap."""
    if process is None or process.poll() is not None:
        return
    family = set(descendants(process.pid))
    kill_group(process)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(process, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(info.alive for info in process_table() if info.pid in family):
            return
        time.sleep(0.05)


def wait_gone(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Reap ``process``, then wait (bounded) for the rest of its group to disappear."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.wait(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(info.alive for info in process_table() if info.pgid == process.pid):
            return
        time.sleep(0.05)


class Postgres:
    """A PostgreSQL cluster in ``root/pgdata``; fsync stays on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.as_root = os.geteuid() == 0

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run_options(self) -> dict[str, Any]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.root),
            "TZ": "UTC",
        }
        if not self.as_root:
            return {"env": env}
        return {
            "env": env,
            "user": PG_USER,
            "group": pwd.getpwnam(PG_USER).pw_gid,
            "extra_groups": [],
        }

    def _own(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if self.as_root:
            entry = pwd.getpwnam(PG_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def init(self) -> Postgres:
        self.root.chmod(0o755)  # the postgres user must reach its directories
        self._own(self.data)
        self._own(self.sockets)
        command = [
            pg_binary("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]
        done = subprocess.run(
            command, capture_output=True, cwd=self.root, check=False, **self._run_options()
        )
        if done.returncode != 0:
            hint = (
                f" (the {PG_USER} user must be able to reach {self.root})" if self.as_root else ""
            )
            raise ClusterError(
                f"initdb failed{hint}: {done.stderr.decode(errors='replace')[-500:]}"
            )
        return self

    def start(self) -> None:
        self._log = (self.root / "postgres.log").open("ab")
        command = [
            pg_binary("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.sockets}",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "fsync=on",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            **self._run_options(),
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=2"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ClusterError(f"postgres exited: see {self.root / 'postgres.log'}")
            try:
                with psycopg.connect(dsn) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise ClusterError(f"postgres not ready after {READY_TIMEOUT:g} s")

    def create_database(self, name: str) -> str:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def dump(self, database: str, path: Path) -> None:
        """``pg_dump -Fc``: a consistent snapshot, taken while the product runs (a backup)."""
        self._client("pg_dump", "-Fc", "-f", str(path), database)

    def restore(self, database: str, path: Path, prepare: str = "") -> None:
        """Replace ``database`` by the dump at ``path`` while the product runs, as a restore
        from a backup (or a failover to a replica that lost recent commits) looks to it: the
        dump is restored beside the database, ``prepare`` (SQL) is run on the copy, then the
        database is dropped (its connections cut) and replaced by the copy in one rename."""
        restored = f"{database}_restored"
        self._client("dropdb", "--if-exists", restored)
        self._client("createdb", restored)
        self._client("pg_restore", "--no-owner", "-d", restored, str(path))
        if prepare:
            self._client("psql", "-d", restored, "-v", "ON_ERROR_STOP=1", "-c", prepare)
        self._client("dropdb", "--force", database)
        self._client(
            "psql", "-d", "postgres", "-c", f'ALTER DATABASE "{restored}" RENAME TO "{database}"'
        )

    def _client(self, name: str, *args: str) -> None:
        command = [
            pg_binary(name),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            *args,
        ]
        done = subprocess.run(command, capture_output=True, check=False, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"{name} failed: {done.stderr.decode(errors='replace')[-500:]}")

    def crash(self) -> None:
        """kill -9 the postmaster and every backend at once: what a power cut looks like."""
        kill_tree(self.process)
        self._close_log()

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.process)
            wait_gone(self.process, 10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Redis:
    """A Redis server in ``root/redis`` with the settings money needs (CELERY.md)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ClusterError("redis-server not found on PATH")
        self._log = (self.dir / "redis.log").open("ab")
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "no",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise ClusterError(f"redis-server exited: see {self.dir / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        raise ClusterError(f"redis-server not ready after {READY_TIMEOUT:g} s")

    def crash(self) -> None:
        """kill -9: whatever the append-only file had not flushed is lost."""
        if self.process is not None:
            kill_group(self.process)
            wait_gone(self.process, 10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(self.process)
            wait_gone(self.process, 5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
