"""Flower as the ops dashboard, on real things: a `celery -A workers worker` process, a
`celery -A workers flower` process, Redis, PostgreSQL and the bundled sandbox. One charge is
driven through, then Flower's HTTP API must refuse strangers and show the worker and the
task by its name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import select

from billing.app import build_app
from billing.broker import CeleryPublisher, celery_config
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.scheduling import Scheduler
from billing.services.status import outstanding
from billing.services.subscriptions import create_subscription
from billing.web.listener import listen
from tests.processes import ROOT, WorkerProcess, product_env, wait_for

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)
CATALOG = "plans:\n  - {id: monthly, name: 월간, amount: 9900, interval: 1 month}\n"
USER, PASSWORD = "ops", "flower-test-pw"


class FlowerProcess:
    """``celery -A workers flower`` on a free port, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path, *options: str) -> None:
        with listen("127.0.0.1", 0) as probe:
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.log, self.options = env, log, options
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(self) -> FlowerProcess:
        self._output = self.log.open("ab")
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "flower",
            f"--port={self.port}",
            "--address=127.0.0.1",
            *self.options,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=product_env(self.env),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, 60, "Flower to answer")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(self.url + "/healthcheck", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Response:
        return httpx.get(self.url + path, auth=auth, timeout=15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._output is not None:
            self._output.close()


@pytest.fixture
def env(db_url: str, redis_url: str) -> Iterator[dict[str, str]]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    sandbox = SandboxServer(SandboxConfig(port=0, auto_register=True)).start()
    yield {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_PORTONE_URL": sandbox.url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_TIMEOUT": "2",
        "BILLING_RECONCILE_AFTER": "5",
    }
    sandbox.stop()


def charge_one(env: dict[str, str]) -> Charge:
    """One subscription charged through the scheduler, the broker and the worker."""
    settings = load_settings(env)
    app = build_app(settings)
    try:
        assert isinstance(app.clocks.billing, DatabaseClock)
        app.clocks.billing.set(START)
        with app.transaction() as session:
            parsed = parse_catalog(CATALOG, "t.yaml", "Asia/Seoul")
            plan_store.load_catalog(session, parsed, "t.yaml", "x", START)
            add_customer(session, "cust-flower", START)
            create_subscription(session, "cust-flower", "monthly", START, START)
        celery = Celery("test-publisher", set_as_current=False)
        celery.conf.update(celery_config(settings))
        scheduler = Scheduler(app, CeleryPublisher(celery))

        def settled() -> bool:
            scheduler.run_pass()
            with app.transaction() as session:
                return outstanding(session, START).total == 0

        wait_for(settled, 60, "the charge to settle", step=0.2)
        with app.transaction() as session:
            [charge] = session.scalars(select(Charge))
        return charge
    finally:
        app.close()


def test_flower_shows_the_worker_and_the_charge_task_to_ops_only(
    env: dict[str, str], tmp_path: Path
) -> None:
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    flower = FlowerProcess(env, tmp_path / "flower.log", f"--basic-auth={USER}:{PASSWORD}")
    try:
        flower.start()
        charge = charge_one(env)
        assert charge.status == "paid"

        for path in ("/api/workers", "/api/tasks", "/", "/tasks", "/workers"):
            assert flower.get(path, auth=None).status_code == 401, path
            assert flower.get(path, auth=(USER, "wrong")).status_code == 401, path

        workers: dict[str, Any] = {}

        def listed() -> bool:
            workers.update(flower.get("/api/workers?refresh=1").json())
            return any(name.startswith("test-") for name in workers)

        wait_for(listed, 30, "Flower to list the worker", step=0.5)
        [name] = [name for name in workers if name.startswith("test-")]
        registered = [task.split()[0] for task in workers[name]["registered"]]
        assert {"billing.charge", "billing.reconcile"} <= set(registered)
        assert all(task.startswith(("billing.", "celery.")) for task in registered), registered

        tasks: dict[str, Any] = {}

        def seen() -> bool:
            tasks.update(flower.get("/api/tasks?limit=100").json())
            return any(t.get("state") == "SUCCESS" for t in tasks.values())

        wait_for(seen, 30, "Flower to show the charge task", step=0.5)
        charges = [t for t in tasks.values() if t["name"] == "billing.charge"]
        assert charges, tasks
        done = [t for t in charges if t["state"] == "SUCCESS"]
        assert done[0]["args"] == f"[[{charge.id}]]" and done[0]["worker"] == name  # a batch
        assert done[0]["result"] == "'approved'"

        # Flower's own Prometheus endpoint and health check stay open even with basic auth:
        # the reason the README keeps Flower off the public network.
        assert flower.get("/healthcheck", auth=None).status_code == 200
        metrics = flower.get("/metrics", auth=None)
        assert metrics.status_code == 200 and 'task="billing.charge"' in metrics.text
    finally:
        flower.stop()
        worker.stop()
    if "workers.logging_setup" in sys.modules:  # wired into workers.app: JSON lines
        lines = [
            json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")
        ]
        assert any(line["action"] == "charge_answer" for line in lines)
        assert any(line["logger"].startswith("celery.") for line in lines)


def test_flower_reads_flower_basic_auth_itself(env: dict[str, str], tmp_path: Path) -> None:
    """As docker-compose runs it: no --basic-auth flag, only the environment variable."""
    flower_env = {**env, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    flower = FlowerProcess(flower_env, tmp_path / "flower.log").start()
    try:
        assert flower.get("/api/workers", auth=None).status_code == 401
        assert flower.get("/", auth=None).status_code == 401
        assert flower.get("/api/workers").status_code == 200
    finally:
        flower.stop()
