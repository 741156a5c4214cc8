"""The SMTP password is read from ``password_env`` and stored nowhere (issue 14, item 2):
an e-mail notice logs in with it, and a ``pg_dump`` of the whole database does not hold it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from billing.app import App
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
