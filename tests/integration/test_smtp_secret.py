"""The SMTP password is read from ``password_env`` and stored nowhere (issue 14, item 2):
an e-mail notice logs in with it, and a ``pg_dump`` of the whole database does not hold it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from billing.app import App
from billing.db import migrate
from billing.db.engine import make_engine
from billing.db.tables import CatalogLoad, Notice
from billing.notify import Sender
from tests.receivers import SmtpServer
from tests.world import World

PASSWORD = "smtp-pw-7c1e5b0a9d"


def catalog_with(smtp_url: str) -> str:
    return f"""
notify:
  - type: email
    smtp_url: {smtp_url}
    password_env: TEST_SMTP_PASSWORD
    from: billing@merchant.example
plans:
  - {{id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {{retry_after: [1d], final_action: cancel}}}}
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    started = SmtpServer(login=("mailer", PASSWORD)).start()
    yield started
    started.stop()


def pg_dump(db_url: str) -> str:
    url = make_url(db_url)
    where = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    command = ["pg_dump", "--data-only", *where, "-U", url.username or "postgres"]
    done = subprocess.run(
        [*command, str(url.database)], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_the_smtp_password_comes_from_the_environment_and_is_in_no_table(
    app: App, db_url: str, smtp: SmtpServer
) -> None:
    world = World(app, catalog_with(f"smtp://mailer@127.0.0.1:{smtp.port}"))
    sender = Sender(httpx.Client(), {"TEST_SMTP_PASSWORD": PASSWORD})
    world.subscribe("cust-mail")
    world.gateway.script = ["decline:잔액부족"]
    world.cycle()
    world.scheduler.run_pass()
    for notice_id in world.publisher.notices:
        world.pipeline.deliver(notice_id, sender)
    assert smtp.logins == [("mailer", PASSWORD)]
    [message] = smtp.messages
    assert message["To"] == "cust-mail@example.com"
    dump = pg_dump(db_url)
    assert "TEST_SMTP_PASSWORD" in dump  # the channel is there, by the variable's name
    assert PASSWORD not in dump


def test_without_the_variable_the_notice_waits_with_the_reason(app: App, smtp: SmtpServer) -> None:
    world = World(app, catalog_with(f"smtp://mailer@127.0.0.1:{smtp.port}"))
    sid = world.subscribe("cust-mail")
    world.gateway.script = ["decline"]
    world.cycle()
    world.scheduler.run_pass()
    for notice_id in world.publisher.notices:
        world.pipeline.deliver(notice_id, Sender(httpx.Client(), {}))
    [notice] = [n for n in world.notices(sid) if n.channel == "email"]
    assert notice.status == "pending"
    reason = "the environment variable TEST_SMTP_PASSWORD (password_env) is not set"
    assert notice.last_error == reason
    assert smtp.messages == []


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_an_upgrade_takes_stored_passwords_out_of_every_table(
    dialect: str, fresh_pg_url: str, tmp_path: Path
) -> None:
    """Rows an earlier release wrote with ``smtp://user:password@host`` (migration 0010)."""
    url = fresh_pg_url if dialect == "postgresql" else f"sqlite:///{tmp_path}/m.db"
    engine = make_engine(url)
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")  # the release before 0010
    stored = f"smtp://mailer:{PASSWORD}@127.0.0.1:2525"
    channel = {"type": "email", "smtp_url": stored, "from": "billing@merchant.example"}
    wall = datetime(2027, 1, 1, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        session.add(
            CatalogLoad(
                source="plans.yaml",
                sha256="0" * 64,
                timezone="Asia/Seoul",
                notify={"channels": [{"type": "log"}, channel]},
                plan_versions={},
                loaded_at=wall,
            )
        )
        for n, (kind, config_) in enumerate([("email", channel), ("log", {})]):
            session.add(
                Notice(
                    event_id=f"evt_{n}",
                    dedupe_key=f"d{n}",
                    kind="payment_failed",
                    channel=kind,
                    channel_config=dict(config_),
                    payload={},
                    status="pending",
                    attempts=0,
                    next_attempt_at=wall,
                    created_at=wall,
                    updated_at=wall,
                )
            )
    migrate.upgrade(engine)
    with Session(engine) as session:
        load = session.scalars(select(CatalogLoad)).one()
        email = session.scalars(select(Notice).where(Notice.channel == "email")).one()
        expected = {
            **channel,
            "smtp_url": "smtp://mailer@127.0.0.1:2525",
            "password_env": "BILLING_SMTP_PASSWORD",
        }
        assert load.notify["channels"] == [{"type": "log"}, expected]
        assert email.channel_config == expected
    if dialect == "postgresql":
        assert PASSWORD not in pg_dump(url)
    engine.dispose()
