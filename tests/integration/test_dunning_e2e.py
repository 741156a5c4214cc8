"""Dunning end to end: a real worker process, the sandbox over HTTP, the test clock in the
database, a webhook receiver that checks every signature, and an SMTP server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.integration.conftest import START, Product
from tests.processes import ROOT, product_env, wait_for
from tests.receivers import SmtpServer, WebhookReceiver

SECRET = "whsec-e2e-5678"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(SECRET).start()
    yield started
    started.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    started = SmtpServer().start()
    yield started
    started.stop()


@pytest.fixture
def catalog_text(receiver: WebhookReceiver, smtp: SmtpServer) -> str:
    return f"""
notify:
  - type: webhook
    url: {receiver.url}
    secret_env: E2E_WEBHOOK_SECRET
    allow_private: true  # the test's receiver listens on 127.0.0.1
  - type: email
    smtp_url: {smtp.url}
    from: billing@merchant.example
reminders: {{upcoming_renewal: 0d, trial_will_end: 0d}}
plans:
  - {{id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {{retry_after: [1d, 3d, 7d], final_action: cancel}}}}
"""


@pytest.fixture
def extra_env() -> dict[str, str]:
    return {"E2E_WEBHOOK_SECRET": SECRET}


def days_later(product: Product, days: float) -> None:
    product.clock.advance(timedelta(days=days))
    product.settle()


def deliveries_settled(product: Product, receiver: WebhookReceiver, expected: int) -> None:
    def done() -> bool:
        product.scheduler.run_pass()
        return len(receiver.events) >= expected

    wait_for(done, 30, f"{expected} webhook events", step=0.2)


def test_three_declines_then_paid(product: Product, receiver: WebhookReceiver) -> None:
    sid = product.subscribe("cust-3x")
    product.sandbox.script(customer_uid="cust-3x", behaviors=["decline:잔액부족"] * 3)
    product.settle()
    for days in (1, 2, 4):
        days_later(product, days)
    charges = product.charges()
    assert [c.status for c in charges] == ["failed", "failed", "failed", "paid"]
    assert [c.created_at - START for c in charges] == [timedelta(days=d) for d in (0, 1, 3, 7)]
    sub = product.subscription(sid)
    assert sub.status == "active" and sub.next_charge_at == START + timedelta(days=28)
    deliveries_settled(product, receiver, 4)
    assert receiver.types() == sorted(["payment_failed"] * 3 + ["payment_recovered"])
    assert receiver.bad_signatures == 0
    assert product.anomalies() == []


def test_a_card_that_always_declines(product: Product, receiver: WebhookReceiver) -> None:
    sid = product.subscribe("cust-never")
    product.sandbox.set_default(customer_uid="cust-never", behavior="decline:한도초과")
    product.settle()
    for _ in range(12):
        days_later(product, 1)
    charges = product.charges()
    assert [c.created_at - START for c in charges] == [timedelta(days=d) for d in (0, 1, 3, 7)]
    assert {c.status for c in charges} == {"failed"}
    assert product.subscription(sid).status == "canceled"
    days_later(product, 60)
    assert len(product.charges()) == 4  # never charged again
    deliveries_settled(product, receiver, 5)
    assert receiver.types() == sorted(["payment_failed"] * 4 + ["subscription_canceled"])


def test_a_hard_decline_is_not_retried(product: Product, smtp: SmtpServer) -> None:
    sid = product.subscribe("cust-lost")
    product.sandbox.set_default(customer_uid="cust-lost", behavior="decline:분실신고 카드")
    product.settle()
    for _ in range(5):
        days_later(product, 1)
    [charge] = product.charges()
    assert charge.decline_class == "hard"
    assert product.subscription(sid).status == "past_due"  # waiting for a new card
    wait_for(lambda: (product.scheduler.run_pass(), smtp.messages)[1], 30, "the e-mail")
    mail = smtp.messages[0]
    assert mail["To"] == "cust-lost@example.com"
    assert "카드를 다시 등록해 주세요" in mail.get_content()  # type: ignore[attr-defined]


def test_card_updated_recovers_a_past_due_subscription(product: Product) -> None:
    sid = product.subscribe("cust-new-card")
    product.sandbox.script(customer_uid="cust-new-card", behaviors=["decline:분실신고 카드"])
    product.settle()
    assert product.subscription(sid).status == "past_due"
    command = [sys.executable, "-m", "billing", "customers", "card-updated", "cust-new-card"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=product_env(product.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"retrying at once: {sid}" in done.stdout
    product.settle()
    assert [c.status for c in product.charges()] == ["failed", "paid"]
    assert product.subscription(sid).status == "active"


def test_webhook_receiver_sees_each_event_once_after_dedup(
    product: Product, receiver: WebhookReceiver
) -> None:
    for n in range(5):
        product.subscribe(f"cust-w{n}")
        product.sandbox.script(customer_uid=f"cust-w{n}", behaviors=["decline"])
    receiver.fail_next = 3  # the receiver is down for a moment: retried until 2xx
    product.settle()
    deliveries_settled(product, receiver, 5)
    assert receiver.types() == ["payment_failed"] * 5
    assert len(receiver.deliveries) == len(receiver.events) == 5
    assert receiver.bad_signatures == 0


def test_subscription_events_command_shows_the_history(product: Product) -> None:
    sid = product.subscribe("cust-hist")
    product.sandbox.script(customer_uid="cust-hist", behaviors=["decline"])
    product.settle()
    days_later(product, 1)
    command = [sys.executable, "-m", "billing", "subscriptions", "events", str(sid), "--json"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=product_env(product.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    import json

    history = json.loads(done.stdout)
    kinds = [h["kind"] for h in history]
    assert kinds[0] == "subscription_created"
    assert kinds.index("charge_failed") < kinds.index("dunning_retry") < kinds.index("charge_paid")
    assert "notice_queued" in kinds
    assert [h["id"] for h in history] == sorted(h["id"] for h in history)
