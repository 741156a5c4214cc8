"""Dunning, decline classes, notices and history on real PostgreSQL, driven step by step
(in-memory PortOne and broker; real webhook and SMTP receivers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from billing.app import App
from billing.db.tables import Event
from billing.notify import Sender
from billing.services.subscriptions import card_updated, create_subscription
from tests.receivers import SmtpServer, WebhookReceiver
from tests.world import START, World

SECRET = "whsec-test-1234"


def catalog_with(
    webhook: str, smtp: str, retry: str = "[1d, 3d, 7d]", final: str = "cancel"
) -> str:
    return f"""
notify:
  - type: log
  - type: webhook
    url: {webhook}
    secret_env: TEST_WEBHOOK_SECRET
    allow_private: true  # the test's receiver listens on 127.0.0.1
  - type: email
    smtp_url: {smtp}
    from: billing@merchant.example
reminders: {{upcoming_renewal: 3d, trial_will_end: 2d}}
plans:
  - {{id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {{retry_after: {retry}, final_action: {final}}}}}
  - {{id: trial, name: 체험, amount: 9900, interval: 1 month, trial_days: 7}}
"""


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


class Dunning(World):
    """The world plus a notice sender, so each step also delivers its notices."""

    def __init__(
        self, app: App, receiver: WebhookReceiver, smtp: SmtpServer, **catalog: str
    ) -> None:
        super().__init__(app, catalog_with(receiver.url, smtp.url, **catalog))
        self.sender = Sender(httpx.Client(), {"TEST_WEBHOOK_SECRET": SECRET})

    def cycle(self) -> None:
        super().cycle()
        self.scheduler.run_pass()  # publishes due notices
        for notice_id in self.publisher.notices[:]:
            self.pipeline.deliver(notice_id, self.sender)
        self.publisher.notices.clear()

    def attempts(self, sid: int) -> list[tuple[str, str]]:
        return [(c.status, c.created_at.isoformat()) for c in self.charges(sid)]

    def days_later(self, days: float) -> None:
        self.clock.advance(timedelta(days=days))
        self.cycle()


@pytest.fixture
def dunning(app: App, receiver: WebhookReceiver, smtp: SmtpServer) -> Dunning:
    return Dunning(app, receiver, smtp)


def kinds(world: World, sid: int) -> list[str]:
    return [n.kind for n in world.notices(sid) if n.channel == "webhook"]


def test_a_card_that_declines_three_times_then_pays_recovers_on_the_original_schedule(
    dunning: Dunning, receiver: WebhookReceiver
) -> None:
    sid = dunning.subscribe()
    dunning.gateway.script = ["decline", "decline", "decline", "approve"]
    dunning.cycle()
    for day in (1, 2, 4):  # clock: +1d, +3d, +7d from the first failure
        dunning.days_later(day)
    assert [status for status, _ in dunning.attempts(sid)] == ["failed", "failed", "failed", "paid"]
    sub = dunning.subscription(sid)
    assert sub.status == "active" and sub.period_no == 2
    assert sub.next_charge_at == START + timedelta(days=28)  # Feb 28 00:30 KST, as before
    assert kinds(dunning, sid) == ["payment_failed"] * 3 + ["payment_recovered"]
    assert receiver.types() == sorted(["payment_failed"] * 3 + ["payment_recovered"])
    assert receiver.bad_signatures == 0


def test_a_card_that_always_declines_is_tried_len_retry_after_plus_one_times_then_canceled(
    dunning: Dunning,
) -> None:
    sid = dunning.subscribe()
    dunning.gateway.script = ["decline"] * 20
    dunning.cycle()
    for _ in range(40):
        dunning.days_later(1)
    assert dunning.attempts(sid) == [
        ("failed", (START + timedelta(days=d)).isoformat()) for d in (0, 1, 3, 7)
    ]
    sub = dunning.subscription(sid)
    assert sub.status == "canceled" and sub.next_charge_at is None
    assert kinds(dunning, sid) == ["payment_failed"] * 4 + ["subscription_canceled"]


def test_final_action_pause(app: App, receiver: WebhookReceiver, smtp: SmtpServer) -> None:
    world = Dunning(app, receiver, smtp, retry="[1d]", final="pause")
    sid = world.subscribe()
    world.gateway.script = ["decline"] * 5
    world.cycle()
    world.days_later(1)
    assert world.subscription(sid).status == "paused"
    assert kinds(world, sid)[-1] == "subscription_paused"


def test_a_hard_decline_is_not_retried_and_asks_for_a_new_card(dunning: Dunning) -> None:
    sid = dunning.subscribe()
    dunning.gateway.script = ["decline:분실신고 카드"]
    dunning.cycle()
    [charge] = dunning.charges(sid)
    assert (charge.status, charge.decline_class) == ("failed", "hard")
    [failed] = [n for n in dunning.notices(sid) if n.channel == "webhook"]
    assert failed.payload["data"]["needs_new_card"] is True
    for _ in range(10):
        dunning.days_later(1)
    assert len(dunning.charges(sid)) == 1  # no retry, ever
    assert dunning.subscription(sid).status == "canceled"  # the window closed: final action
    assert kinds(dunning, sid) == ["payment_failed", "subscription_canceled"]


def test_card_updated_retries_every_past_due_subscription_at_once(dunning: Dunning) -> None:
    first = dunning.subscribe("cust-1")
    second = dunning.subscribe("cust-1")
    dunning.gateway.script = ["decline:분실신고 카드", "decline"]
    dunning.cycle()
    assert {dunning.subscription(s).status for s in (first, second)} == {"past_due"}
    dunning.clock.advance(timedelta(hours=2))
    with dunning.app.transaction() as session:
        retried = card_updated(session, "cust-1", dunning.clock.now())
    assert sorted(r.id for r in retried) == [first, second]
    dunning.cycle()
    for sid in (first, second):
        assert [c.status for c in dunning.charges(sid)] == ["failed", "paid"]
        assert dunning.subscription(sid).status == "active"


def test_no_more_than_15_declined_attempts_on_one_card_in_30_days(dunning: Dunning) -> None:
    sids = [dunning.subscribe("cust-many") for _ in range(16)]
    dunning.gateway.script = ["decline"] * 16
    dunning.cycle()  # 15 in flight at once: the 16th waits for their answers
    dunning.cycle()  # 15 declines: the 16th waits for the oldest to leave the window
    charged = [sid for sid in sids if dunning.charges(sid)]
    assert len(charged) == 15
    [waiting] = set(sids) - set(charged)
    assert dunning.subscription(waiting).next_charge_at == START + timedelta(days=30, seconds=1)


def test_reminders_go_out_once_ahead_of_renewals_and_trial_ends(dunning: Dunning) -> None:
    renewing = dunning.subscribe("cust-r")
    with dunning.app.transaction() as session:
        from billing.services.customers import add_customer

        add_customer(session, "cust-t", START, email="t@example.com")
        trialing = create_subscription(session, "cust-t", "trial", START, START).id
    dunning.cycle()  # first charge of cust-r; cust-t's trial ends in 7 days
    dunning.days_later(4)  # trial ends in 3 days: not yet (lead 2d)
    assert kinds(dunning, trialing) == []
    dunning.days_later(1)
    assert kinds(dunning, trialing) == ["trial_will_end"]
    dunning.days_later(20)  # renewal on day 28: inside the 3-day lead
    assert kinds(dunning, renewing) == ["upcoming_renewal"]
    dunning.days_later(1)
    assert kinds(dunning, renewing) == ["upcoming_renewal"]  # once


def test_webhook_notices_are_retried_until_2xx_and_keep_their_event_id(
    dunning: Dunning, receiver: WebhookReceiver
) -> None:
    sid = dunning.subscribe()
    receiver.fail_next = 2
    dunning.gateway.script = ["decline"]
    dunning.cycle()
    [notice] = [n for n in dunning.notices(sid) if n.channel == "webhook"]
    assert (notice.status, notice.attempts) == ("pending", 1)
    for _ in range(2):
        dunning.wall = notice.next_attempt_at = dunning.notices(sid)[1].next_attempt_at
        dunning.cycle()
    [notice] = [n for n in dunning.notices(sid) if n.channel == "webhook"]
    assert (notice.status, notice.attempts) == ("delivered", 3)
    assert [d["id"] for d in receiver.deliveries] == [notice.event_id]


def test_a_crash_between_send_and_mark_redelivers_the_same_event(
    dunning: Dunning, receiver: WebhookReceiver
) -> None:
    from billing.domain.notices import DELIVERY_LEASE as LEASE
    from billing.services.delivery import begin_delivery

    sid = dunning.subscribe()
    dunning.gateway.script = ["decline"]
    dunning.scheduler.run_pass()
    dunning.run_queue()
    dunning.scheduler.run_pass()
    [webhook] = [n for n in dunning.notices(sid) if n.channel == "webhook"]
    with dunning.app.transaction() as session:  # a worker takes it, sends it, and dies
        work = begin_delivery(session, webhook.id, dunning.wall)
    assert work is not None
    dunning.sender.send(work)
    dunning.wall += LEASE
    dunning.cycle()
    assert [n.status for n in dunning.notices(sid)] == ["delivered"] * 3
    assert [d["id"] for d in receiver.deliveries] == [webhook.event_id] * 2  # at least once
    assert list(receiver.events) == [webhook.event_id]  # once after de-duplication


def test_an_email_notice_arrives_at_the_smtp_server(dunning: Dunning, smtp: SmtpServer) -> None:
    dunning.subscribe("cust-mail")
    dunning.gateway.script = ["decline:잔액부족"]
    dunning.cycle()
    [message] = smtp.messages
    assert message["To"] == "cust-mail@example.com"
    assert message["From"] == "billing@merchant.example"
    assert "결제에 실패했습니다" in message["Subject"]
    assert "잔액부족" in message.get_content()  # type: ignore[attr-defined]


def test_a_missing_webhook_secret_keeps_the_notice_pending_with_the_reason(
    dunning: Dunning, receiver: WebhookReceiver
) -> None:
    dunning.sender = Sender(httpx.Client(), {})
    sid = dunning.subscribe()
    dunning.gateway.script = ["decline"]
    dunning.cycle()
    [notice] = [n for n in dunning.notices(sid) if n.channel == "webhook"]
    assert notice.status == "pending"
    assert (
        notice.last_error == "the environment variable TEST_WEBHOOK_SECRET (secret_env) is not set"
    )
    assert receiver.deliveries == []


def test_history_has_every_state_change_attempt_and_notice_oldest_first(dunning: Dunning) -> None:
    sid = dunning.subscribe()
    dunning.gateway.script = ["decline", "approve"]
    dunning.cycle()
    dunning.days_later(1)
    with dunning.app.transaction() as session:
        query = select(Event.kind).where(Event.subscription_id == sid).order_by(Event.id)
        history = list(session.scalars(query))
    assert history[0] == "subscription_created"
    for kind in (
        "charge_created",
        "gateway_answer",
        "charge_failed",
        "dunning_retry",
        "notice_queued",
        "notice_delivered",
        "charge_paid",
        "payment_recovered",
    ):
        assert kind in history
    assert history.index("charge_failed") < history.index("charge_paid")
