"""The console's actions over real HTTP: each does what the CLI's command does and records
``ops:<user>`` with the reason; a form without its token, bad input and a refusal of the
service change nothing and say why in one line."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from billing.db.tables import Charge, Notice, Subscription
from billing.services.delivery import begin_delivery
from tests.conftest import snapshot
from tests.integration.ops.conftest import Ops

ACTOR = "ops:oncall"


def text_of(answer: httpx.Response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", answer.text)).split())


def done(answer: httpx.Response, sid: int, what: str) -> None:
    assert answer.status_code == 303, text_of(answer)
    assert answer.headers["location"] == f"/ops/subscriptions/{sid}?done={what}"


def refused(answer: httpx.Response, status: int, message: str) -> None:
    """The page again, with the one-line message, and the status that says why."""
    assert answer.status_code == status, text_of(answer)
    found = re.search(r'<p class="banner error" role="alert" id="error">(.*?)</p>', answer.text)
    assert found, answer.text
    assert html.unescape(found.group(1)) == message


# -- each action, done ---------------------------------------------------------------------------


def test_retry_now_makes_a_past_due_subscription_due_and_the_scheduler_charges_it(
    ops: Ops,
) -> None:
    sid = ops.past_due("cust-1")
    assert ops.subscription(sid).next_charge_at == ops.clock.now() + timedelta(days=1)
    done(ops.post(f"/subscriptions/{sid}/retry", {"reason": "card fixed by phone"}), sid, "retried")
    assert ops.subscription(sid).next_charge_at == ops.clock.now()
    assert ops.events(sid)[-1] == ("retry_now", ACTOR, "card fixed by phone")
    ops.charge_due()
    assert ops.subscription(sid).status == "active"
    assert [c.status for c in ops.charges(sid)] == ["failed", "paid"]
    page = ops.get(f"/subscriptions/{sid}?done=retried")
    assert "Retry asked: the scheduler charges it at its next pass." in text_of(page)


def test_retry_now_gives_a_row_set_aside_another_try(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    ops.set_aside(sid, "ValueError: something no code expected")
    done(ops.post(f"/subscriptions/{sid}/retry", {"reason": "fixed the data"}), sid, "retried")
    assert ops.subscription(sid).set_aside_at is None


@pytest.mark.parametrize(
    ("when", "status", "what"),
    [("now", "canceled", "canceled"), ("period_end", "active", "cancel_scheduled")],
)
def test_cancel_now_or_at_period_end(ops: Ops, when: str, status: str, what: str) -> None:
    sid, _charge = ops.paid("cust-1")
    done(
        ops.post(f"/subscriptions/{sid}/cancel", {"when": when, "reason": "moving abroad"}),
        sid,
        what,
    )
    row = ops.subscription(sid)
    assert (row.status, row.cancel_at_period_end) == (status, when == "period_end")
    kind = "subscription_canceled" if when == "now" else "cancel_scheduled"
    assert (kind, ACTOR, "moving abroad") in ops.events(sid)


def test_pause_then_resume(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-1")
    done(ops.post(f"/subscriptions/{sid}/pause", {"reason": "customer travels"}), sid, "paused")
    assert ops.subscription(sid).status == "paused"
    done(ops.post(f"/subscriptions/{sid}/resume", {"reason": "back home"}), sid, "resumed")
    assert ops.subscription(sid).status == "active"
    kinds = [(k, a, r) for k, a, r in ops.events(sid) if a == ACTOR]
    assert ("subscription_paused", ACTOR, "customer travels") in kinds
    assert ("subscription_resumed", ACTOR, "back home") in kinds


def test_refund_part_then_the_rest(ops: Ops) -> None:
    sid, charge = ops.paid("cust-1")
    done(
        ops.post(
            f"/charges/{charge.id}/refund",
            {"amount": "3,000", "reason": "price error"},
            page=f"/subscriptions/{sid}",
        ),
        sid,
        "refund_succeeded",
    )
    done(
        ops.post(
            f"/charges/{charge.id}/refund",
            {"amount": "", "reason": "closing account"},
            page=f"/subscriptions/{sid}",
        ),
        sid,
        "refund_succeeded",
    )
    assert [(r.amount, r.status, r.reason) for r in ops.refunds(charge.id)] == [
        (3000, "succeeded", "price error"),
        (6900, "succeeded", "closing account"),
    ]
    assert ops.charges(sid)[0].refunded_amount == 9900
    refunded = [(k, a, r) for k, a, r in ops.events(sid) if k == "charge_refunded"]
    assert refunded == [
        ("charge_refunded", ACTOR, "price error"),
        ("charge_refunded", ACTOR, "closing account"),
    ]
    cancelled = [p for p in ops.sandbox.ledger() if p["merchant_uid"] == charge.merchant_uid]
    assert cancelled[0]["cancel_amount"] == 9900  # PortOne gave the money back
    page = text_of(ops.get(f"/subscriptions/{sid}"))
    assert "refunded 9,900 KRW" in page
    assert f'id="refund-charge-{charge.id}"' not in ops.get(f"/subscriptions/{sid}").text


def test_a_refund_portone_refuses_is_failed_and_said(ops: Ops) -> None:
    sid, charge = ops.paid("cust-1")
    with ops.app.transaction() as session:  # our balance and PortOne's differ: checksum
        session.execute(update(Charge).where(Charge.id == charge.id).values(amount=19900))
    answer = ops.post(
        f"/charges/{charge.id}/refund", {"reason": "test"}, page=f"/subscriptions/{sid}"
    )
    done(answer, sid, "refund_failed")
    assert [r.status for r in ops.refunds(charge.id)] == ["failed"]
    shown = text_of(ops.get(answer.headers["location"].removeprefix("/ops")))
    assert "The refund failed: PortOne refused it (the timeline says why). No money moved." in shown


def test_resend_a_failing_notice_makes_it_due_at_once(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    notice = ops.failing_notice(sid, "HTTP 500 from the receiver")
    assert ops.notice(notice.id).next_attempt_at > datetime.now(UTC)
    done(
        ops.post(
            f"/notices/{notice.id}/resend",
            {"reason": "receiver fixed"},
            page=f"/subscriptions/{sid}",
        ),
        sid,
        "resent",
    )
    again = ops.notice(notice.id)
    assert (again.status, again.event_id) == ("pending", notice.event_id)
    assert again.next_attempt_at <= datetime.now(UTC)
    assert ops.events(sid)[-1] == ("notice_resend", ACTOR, "receiver fixed")


def test_resend_a_delivered_notice(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    with ops.app.transaction() as session:
        notice = session.scalars(select(Notice).where(Notice.subscription_id == sid)).one()
        notice.status = "delivered"
    done(
        ops.post(
            f"/notices/{notice.id}/resend",
            {"reason": "customer lost the mail"},
            page=f"/subscriptions/{sid}",
        ),
        sid,
        "resent",
    )
    assert ops.notice(notice.id).status == "pending"


# -- refused: nothing changes --------------------------------------------------------------------


def test_a_form_without_a_valid_csrf_token_is_403_and_does_nothing(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    charge = ops.charges(sid)[0]
    before = snapshot(ops.env["BILLING_DATABASE_URL"])
    forms = [
        (f"/subscriptions/{sid}/{verb}", {"reason": "x", "when": "now"})
        for verb in ("retry", "cancel", "pause", "resume")
    ]
    forms += [
        (f"/charges/{charge.id}/refund", {"reason": "x"}),
        ("/notices/1/resend", {"reason": "x"}),
    ]
    for path, data in forms:
        for token in (None, "", "1800000000.deadbeef", ops.token(f"/subscriptions/{sid}") + "0"):
            body = data if token is None else {**data, "csrf": token}
            answer = ops.http.post(ops.console + path, data=body)
            assert answer.status_code == 403, path
            assert "this form has no valid CSRF token" in text_of(answer)
    assert snapshot(ops.env["BILLING_DATABASE_URL"]) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "reason: say why (it is kept in the event log with your name)"),
        ({"reason": "   "}, "reason: say why (it is kept in the event log with your name)"),
        ({"reason": "x" * 201}, "reason: at most 200 characters, got 201"),
    ],
)
def test_every_action_needs_a_reason(ops: Ops, data: dict[str, str], message: str) -> None:
    sid = ops.past_due("cust-1")
    charge = ops.charges(sid)[0]
    before = snapshot(ops.env["BILLING_DATABASE_URL"])
    for path in [f"/subscriptions/{sid}/{verb}" for verb in ("retry", "pause", "resume")]:
        refused(ops.post(path, data), 400, message)
    refused(ops.post(f"/subscriptions/{sid}/cancel", {"when": "now", **data}), 400, message)
    notice = ops.notice(1)
    refused(
        ops.post(f"/notices/{notice.id}/resend", data, page=f"/subscriptions/{sid}"), 400, message
    )
    assert charge.status == "failed"
    assert snapshot(ops.env["BILLING_DATABASE_URL"]) == before


def test_bad_refund_amounts_and_cancel_choices_change_nothing(ops: Ops) -> None:
    sid, charge = ops.paid("cust-1")
    page = f"/subscriptions/{sid}"
    before = snapshot(ops.env["BILLING_DATABASE_URL"])
    for amount in ("abc", "0", "-1", "12.5"):
        refused(
            ops.post(f"/charges/{charge.id}/refund", {"amount": amount, "reason": "x"}, page=page),
            400,
            f"amount: a whole number of KRW above 0, such as 5000, got {amount!r} (leave "
            "it empty to refund all that is left)",
        )
    refused(
        ops.post(f"/charges/{charge.id}/refund", {"amount": "20000", "reason": "x"}, page=page),
        409,
        f"--amount 20000 KRW is more than charge {charge.id} has left to refund: 9900 KRW "
        "(paid 9900, refunded 0)",
    )
    refused(
        ops.post(f"/subscriptions/{sid}/cancel", {"when": "tomorrow", "reason": "x"}),
        400,
        "when: one of now, period_end, got 'tomorrow'",
    )
    assert snapshot(ops.env["BILLING_DATABASE_URL"]) == before


def test_conflicts_show_the_services_message_and_change_nothing(ops: Ops) -> None:
    active, paid = ops.paid("cust-paid")
    flying, unknown = ops.unknown("cust-flying")
    past = ops.past_due("cust-late")
    failed = ops.charges(past)[0]
    done(ops.post(f"/subscriptions/{flying}/pause", {"reason": "hold"}), flying, "paused")
    before = snapshot(ops.env["BILLING_DATABASE_URL"])
    refused(
        ops.post(f"/subscriptions/{flying}/resume", {"reason": "go"}),
        409,
        f"cannot resume subscription {flying} while its charge {unknown.merchant_uid} is "
        f"being settled; try again once `billing charges list --subscription {flying}` "
        "shows it paid or failed",
    )
    refused(
        ops.post(f"/subscriptions/{active}/retry", {"reason": "go"}),
        409,
        "only a past_due subscription is retried, this one is active",
    )
    refused(
        ops.post(f"/subscriptions/{active}/resume", {"reason": "go"}),
        409,
        "cannot resume a subscription that is active",
    )
    refused(
        ops.post(f"/charges/{failed.id}/refund", {"reason": "go"}, page=f"/subscriptions/{past}"),
        409,
        f"charge {failed.id} is failed: only a paid charge is refunded",
    )
    assert paid.status == "paid"
    assert snapshot(ops.env["BILLING_DATABASE_URL"]) == before


def test_retry_now_waits_for_a_charge_in_flight(ops: Ops) -> None:
    sid, unknown = ops.unknown("cust-1")
    with ops.app.transaction() as session:  # what a decline found later would leave
        session.execute(
            update(Subscription).where(Subscription.id == sid).values(status="past_due")
        )
    before = snapshot(ops.env["BILLING_DATABASE_URL"])
    refused(
        ops.post(f"/subscriptions/{sid}/retry", {"reason": "go"}),
        409,
        f"subscription {sid} has charge {unknown.merchant_uid} being settled (unknown); it "
        "is retried by its own outcome, try again once it is paid or failed",
    )
    assert snapshot(ops.env["BILLING_DATABASE_URL"]) == before


def test_resend_waits_for_a_notice_being_sent(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    with ops.app.transaction() as session:
        notice = session.scalars(select(Notice).where(Notice.subscription_id == sid)).one()
        assert begin_delivery(session, notice.id, datetime.now(UTC)) is not None
    refused(
        ops.post(f"/notices/{notice.id}/resend", {"reason": "go"}, page=f"/subscriptions/{sid}"),
        409,
        f"notice {notice.id} is being sent right now; look again in a minute",
    )


def test_actions_on_what_does_not_exist_are_404(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-1")
    page = f"/subscriptions/{sid}"
    for path, message in [
        ("/subscriptions/999/pause", "no subscription with id 999"),
        ("/charges/999/refund", "no charge 999"),
        ("/notices/999/resend", "no notice 999 of a subscription"),
        ("/subscriptions/99999999999999999999/pause", "nothing has id 99999999999999999999"),
    ]:
        answer = ops.post(path, {"reason": "x"}, page=page)
        assert answer.status_code == 404, path
        assert message in text_of(answer)


def test_a_form_too_large_is_refused(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-1")
    answer = ops.post(f"/subscriptions/{sid}/pause", {"reason": "x", "pad": "y" * 20_000})
    assert answer.status_code == 413
    assert ops.subscription(sid).status == "active"
