"""The event log's schema: one payload type per kind, and each payload stored exactly as the
call sites wrote it before events were typed (the expected objects are written out by hand
from that code). Pure: no database."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from billing.cli.subscriptions import _summary
from billing.db.tables import Event
from billing.domain import events
from billing.domain.dunning import DeclineAction
from billing.domain.events import (
    AttemptPostponed,
    BillingKeyDeleted,
    BillingKeyRegistered,
    BillingKeyVerified,
    CancelScheduled,
    CardUpdated,
    ChargeCreated,
    ChargeFailed,
    ChargePaid,
    ChargeRefunded,
    ChargeStuck,
    ChargeVoided,
    CustomerSaved,
    DuplicatePayment,
    EventKind,
    EventPayload,
    GatewayAnswer,
    LookupBeforeSend,
    NoticeDelivered,
    NoticeQueued,
    NoticeResend,
    PaidAfterCancel,
    PaidAfterPause,
    PaymentForSupersededPeriod,
    PaymentRecovered,
    PeriodSkipped,
    PlanChanged,
    PortoneNotice,
    Reconciled,
    RefundAnswer,
    RefundFailed,
    RefundFields,
    RefundReconciled,
    RefundRequested,
    RetryNow,
    SchedulesTakenOver,
    SetAside,
    SubscriptionCanceled,
    SubscriptionCreated,
    SubscriptionPaused,
    SubscriptionResumed,
    dunning_event,
    event_data,
)
from billing.services.history import acting_as, event_row, record_event
from billing.services.timeline import answer_line, details
from billing.views import event_view

NEXT = "2027-02-01T00:00:00+00:00"
REFUND = RefundFields(
    refund_id=7,
    merchant_uid="sub-k-1-1",
    imp_uid="imp_1",
    amount=3000,
    checksum=9900,
    refund_reason="customer asked",
)
REFUND_DATA = {
    "refund_id": 7,
    "merchant_uid": "sub-k-1-1",
    "imp_uid": "imp_1",
    "amount": 3000,
    "checksum": 9900,
    "refund_reason": "customer asked",
}
TRANSITION: dict[str, Any] = {
    "status_before": "active",
    "status": "paused",
    "plan_id": "monthly",
    "next_plan_id": None,
    "cancel_at_period_end": False,
    "next_charge_at": None,
}

# (payload as a call site builds it, the object that call site stored before)
ROWS: list[tuple[EventPayload, dict[str, Any]]] = [
    (
        SubscriptionCreated(
            customer_uid="c1",
            plan_id="monthly",
            plan_version=2,
            status="active",
            next_charge_at=NEXT,
        ),
        {
            "customer_uid": "c1",
            "plan_id": "monthly",
            "plan_version": 2,
            "status": "active",
            "next_charge_at": NEXT,
        },
    ),
    (
        CancelScheduled(**TRANSITION, detail="cancel at period end"),
        {**TRANSITION, "detail": "cancel at period end"},
    ),
    (
        SubscriptionCanceled(**TRANSITION, detail="canceled by the merchant"),
        {**TRANSITION, "detail": "canceled by the merchant"},
    ),
    (SubscriptionPaused(**TRANSITION), TRANSITION),
    (SubscriptionResumed(**TRANSITION), TRANSITION),
    (
        PlanChanged(**{**TRANSITION, "next_plan_id": "yearly"}),
        {**TRANSITION, "next_plan_id": "yearly"},
    ),
    (
        CardUpdated(next_charge_at=NEXT, retry_when_in_flight_charge_fails=False),
        {"next_charge_at": NEXT, "retry_when_in_flight_charge_fails": False},
    ),
    (RetryNow(next_charge_at=NEXT, attempt=2), {"next_charge_at": NEXT, "attempt": 2}),
    (SetAside(reason="KeyError: 'gone'"), {"reason": "KeyError: 'gone'"}),
    (PeriodSkipped(reason="0 KRW"), {"reason": "0 KRW"}),
    (
        AttemptPostponed(reason="15 declined attempts on this card in 30 days", until=NEXT),
        {"reason": "15 declined attempts on this card in 30 days", "until": NEXT},
    ),
    (
        SchedulesTakenOver(
            revoked=("p-2", "p-3"),
            fired=("p-1",),
            declined=(),
            first_charge_at=NEXT,
            status="active",
        ),
        {
            "revoked": ["p-2", "p-3"],
            "fired": ["p-1"],
            "declined": [],
            "first_charge_at": NEXT,
            "status": "active",
        },
    ),
    (
        ChargeCreated(
            merchant_uid="sub-k-1-1",
            amount=9900,
            period_no=1,
            attempt=1,
            source="ledger reconciliation",
        ),
        {
            "merchant_uid": "sub-k-1-1",
            "amount": 9900,
            "period_no": 1,
            "attempt": 1,
            "source": "ledger reconciliation",
        },
    ),
    (
        LookupBeforeSend(merchant_uid="sub-k-1-1", reason="charged late"),
        {"merchant_uid": "sub-k-1-1", "reason": "charged late"},
    ),
    (
        GatewayAnswer(
            merchant_uid="sub-k-1-1",
            amount=9900,
            send=1,
            outcome="approved",
            http_status=200,
            code=0,
            reason="",
            imp_uid="imp_1",
        ),
        {
            "merchant_uid": "sub-k-1-1",
            "amount": 9900,
            "send": 1,
            "outcome": "approved",
            "http_status": 200,
            "code": 0,
            "reason": "",
            "imp_uid": "imp_1",
        },
    ),
    (ChargeStuck(merchant_uid="sub-k-1-1"), {"merchant_uid": "sub-k-1-1"}),
    (
        Reconciled(
            merchant_uid="sub-k-1-1",
            found="paid",
            step="Settle",
            imp_uid="imp_1",
            reason="",
            amount_matches=True,
            refusal=None,
            lookup=1,
        ),
        {
            "merchant_uid": "sub-k-1-1",
            "found": "paid",
            "step": "Settle",
            "imp_uid": "imp_1",
            "reason": "",
            "amount_matches": True,
            "refusal": None,
            "lookup": 1,
        },
    ),
    (
        PortoneNotice(
            merchant_uid="sub-k-1-1",
            imp_uid="imp_1",
            portone_status="paid",
            charge_status="unknown",
            verdict="settled",
            reason="",
        ),
        {
            "merchant_uid": "sub-k-1-1",
            "imp_uid": "imp_1",
            "portone_status": "paid",
            "charge_status": "unknown",
            "verdict": "settled",
            "reason": "",
        },
    ),
    (
        ChargePaid(merchant_uid="sub-k-1-1", amount=9900, imp_uid="imp_1", period_no=1, attempt=1),
        {
            "merchant_uid": "sub-k-1-1",
            "amount": 9900,
            "imp_uid": "imp_1",
            "period_no": 1,
            "attempt": 1,
        },
    ),
    (
        DuplicatePayment(
            merchant_uid="sub-k-1-2",
            imp_uid="imp_2",
            amount=9900,
            first_charge_id=1,
            action="refund it: billing charges refund 2 --reason duplicate",
        ),
        {
            "merchant_uid": "sub-k-1-2",
            "imp_uid": "imp_2",
            "amount": 9900,
            "first_charge_id": 1,
            "action": "refund it: billing charges refund 2 --reason duplicate",
        },
    ),
    (
        PaidAfterCancel(merchant_uid="sub-k-1-1", amount=9900, imp_uid="imp_1", action="refund"),
        {"merchant_uid": "sub-k-1-1", "amount": 9900, "imp_uid": "imp_1", "action": "refund"},
    ),
    (
        PaidAfterPause(merchant_uid="sub-k-1-1", amount=9900, imp_uid=None, action="refund"),
        {"merchant_uid": "sub-k-1-1", "amount": 9900, "imp_uid": None, "action": "refund"},
    ),
    (PaymentForSupersededPeriod(period_no=3), {"period_no": 3}),
    (PaymentRecovered(attempt=3), {"attempt": 3}),
    (
        ChargeFailed(
            merchant_uid="sub-k-1-1",
            amount=9900,
            reason="잔액부족",
            decline_class="soft",
            period_no=1,
            attempt=1,
        ),
        {
            "merchant_uid": "sub-k-1-1",
            "amount": 9900,
            "reason": "잔액부족",
            "decline_class": "soft",
            "period_no": 1,
            "attempt": 1,
        },
    ),
    (
        ChargeVoided(merchant_uid="sub-k-1-1", amount=9900, reason="voided: canceled"),
        {"merchant_uid": "sub-k-1-1", "amount": 9900, "reason": "voided: canceled"},
    ),
    *[
        (dunning_event(action, "past_due", NEXT), {"status": "past_due", "next_charge_at": NEXT})
        for action in DeclineAction
    ],
    (RefundRequested(**REFUND), REFUND_DATA),
    (
        RefundAnswer(
            **REFUND,
            send=1,
            outcome="done",
            http_status=200,
            code=0,
            reason="",
            gateway_cancelled=3000,
        ),
        {
            **REFUND_DATA,
            "send": 1,
            "outcome": "done",
            "http_status": 200,
            "code": 0,
            "reason": "",
            "gateway_cancelled": 3000,
        },
    ),
    (
        RefundReconciled(
            **REFUND, found="applied", verdict="succeeded", gateway_cancelled=3000, reason=""
        ),
        {
            **REFUND_DATA,
            "found": "applied",
            "verdict": "succeeded",
            "gateway_cancelled": 3000,
            "reason": "",
        },
    ),
    (
        RefundFailed(**REFUND, reason="already cancelled"),
        {**REFUND_DATA, "reason": "already cancelled"},
    ),
    (
        ChargeRefunded(**REFUND, cancellation_id=None, refunded_amount=3000, refundable=6900),
        {**REFUND_DATA, "cancellation_id": None, "refunded_amount": 3000, "refundable": 6900},
    ),
    (
        NoticeQueued(notice="payment_failed", channels=("log", "webhook"), event_ids=("e1", "e2")),
        {"notice": "payment_failed", "channels": ["log", "webhook"], "event_ids": ["e1", "e2"]},
    ),
    (
        NoticeDelivered(notice="payment_failed", channel="log", event_id="e1", attempts=1),
        {"notice": "payment_failed", "channel": "log", "event_id": "e1", "attempts": 1},
    ),
    (
        NoticeResend(notice="payment_failed", channel="log", event_id="e1", status_before="failed"),
        {"notice": "payment_failed", "channel": "log", "event_id": "e1", "status_before": "failed"},
    ),
    (CustomerSaved(customer_uid="c1", created=True), {"customer_uid": "c1", "created": True}),
    (
        BillingKeyRegistered(customer_uid="c1", card_name=None, card_number="****1111", pg=None),
        {"customer_uid": "c1", "card_name": None, "card_number": "****1111", "pg": None},
    ),
    (
        BillingKeyDeleted(
            customer_uid="c1", card_name="신한", card_number="****1111", reason=None, forced=False
        ),
        {
            "customer_uid": "c1",
            "card_name": "신한",
            "card_number": "****1111",
            "reason": None,
            "forced": False,
        },
    ),
    (
        BillingKeyVerified(customer_uid="c1", card_name="신한", card_number="****1111"),
        {"customer_uid": "c1", "card_name": "신한", "card_number": "****1111"},
    ),
]

# The kinds with a second writer that stores other fields than the first.
SECOND_WRITERS: list[tuple[EventPayload, dict[str, Any]]] = [
    (
        SubscriptionCreated(
            plan_id="monthly", plan_version=2, status="active", imported=True, next_charge_at=None
        ),  # subscriptions import
        {
            "plan_id": "monthly",
            "plan_version": 2,
            "status": "active",
            "imported": True,
            "next_charge_at": None,
        },
    ),
    (
        SubscriptionCanceled(reason="canceled at period end"),  # the claim, at the renewal
        {"reason": "canceled at period end"},
    ),
    (
        ChargeCreated(
            merchant_uid="sub-k-2-1",
            amount=9900,
            period_no=2,
            attempt=1,
            lookup_before_send="charged late",
        ),  # the claim's bulk insert
        {
            "merchant_uid": "sub-k-2-1",
            "amount": 9900,
            "period_no": 2,
            "attempt": 1,
            "lookup_before_send": "charged late",
        },
    ),
    (
        ChargeRefunded(
            merchant_uid="sub-k-1-1",
            imp_uid="imp_1",
            amount=9900,
            refunded_amount=9900,
            source="portone",
            reason="refunded at PortOne",
        ),  # found at PortOne
        {
            "merchant_uid": "sub-k-1-1",
            "imp_uid": "imp_1",
            "amount": 9900,
            "refunded_amount": 9900,
            "source": "portone",
            "reason": "refunded at PortOne",
        },
    ),
    (
        BillingKeyRegistered(
            customer_uid="c1", card_number="****1111", via="onetime", merchant_uid="sub-k-1-1"
        ),  # a key-in first payment
        {
            "customer_uid": "c1",
            "card_number": "****1111",
            "via": "onetime",
            "merchant_uid": "sub-k-1-1",
        },
    ),
]


def payload_types() -> list[type[EventPayload]]:
    return [
        value
        for value in vars(events).values()
        if isinstance(value, type) and issubclass(value, EventPayload) and "kind" in vars(value)
    ]


def test_every_kind_has_exactly_one_payload_type() -> None:
    kinds = [payload.kind for payload in payload_types()]
    assert sorted(kinds) == sorted(EventKind)


def test_the_table_has_one_row_per_kind() -> None:
    assert sorted(payload.kind for payload, _ in ROWS) == sorted(EventKind)


@pytest.mark.parametrize(
    ("payload", "stored"), ROWS + SECOND_WRITERS, ids=lambda v: getattr(v, "kind", "")
)
def test_a_payload_is_stored_as_its_call_site_stored_it(
    payload: EventPayload, stored: dict[str, Any]
) -> None:
    data = event_data(payload)
    assert data == stored
    assert list(data) == list(stored)  # the same key order: json keeps it
    assert all(type(value) in (str, int, bool, list, type(None)) for value in data.values())


def test_a_dunning_step_is_written_as_dunning_and_its_action() -> None:
    for action in DeclineAction:
        assert dunning_event(action, "past_due", None).kind == f"dunning_{action}"


def test_the_refund_fields_are_the_fields_every_refund_event_starts_with() -> None:
    names = list(RefundFields.__annotations__)
    for payload in (RefundRequested, RefundAnswer, RefundReconciled, RefundFailed):
        assert [item.name for item in fields(payload)][: len(names)] == names
    assert set(names) <= {item.name for item in fields(ChargeRefunded)}


def test_record_event_stores_the_kind_as_a_string_and_who_acted() -> None:
    class Recorder:
        def add(self, event: Event) -> None:
            pass

    session = Recorder()
    now = datetime(2027, 1, 1, tzinfo=UTC)
    with acting_as("ops:kim", "customer called"):
        event = record_event(session, SetAside(reason="x"), now, subscription_id=3)  # type: ignore[arg-type]
    assert type(event.kind) is str and event.kind == "set_aside"
    assert event.data == {"reason": "x", "actor": "ops:kim"}  # its own reason is kept
    with acting_as("cli", "moving house"):
        event = record_event(session, RetryNow(next_charge_at=NEXT, attempt=1), now)  # type: ignore[arg-type]
    assert event.data == {
        "next_charge_at": NEXT,
        "attempt": 1,
        "actor": "cli",
        "reason": "moving house",
    }


def test_an_event_of_a_kind_this_version_does_not_know_still_renders() -> None:
    """A row written by an older or a newer version: the CLI, the API and the console show
    its kind and data as recorded."""
    row = Event(
        id=9,
        subscription_id=1,
        charge_id=None,
        kind="refund_disputed_by_bank",
        data={"case": "K-17", "at": "2027-01-02T00:00:00+00:00"},
        occurred_at=datetime(2027, 1, 2, tzinfo=UTC),
        recorded_at=datetime(2027, 1, 2, tzinfo=UTC),
    )
    zone = ZoneInfo("Asia/Seoul")
    view = event_view(row, zone)
    assert view["kind"] == "refund_disputed_by_bank"
    assert view["data"]["case"] == "K-17"
    assert "case=K-17" in _summary(view["data"])
    assert ("case", "K-17") in details(row.data, zone)


def test_the_console_shows_the_step_a_lookup_took_and_the_verdict_of_older_rows() -> None:
    new = {"found": "paid", "step": "Settle", "reason": ""}
    old = {"found": "paid", "verdict": "paid", "reason": ""}  # written before the charge machine
    assert answer_line(EventKind.RECONCILED, new) == "looked up: paid -> Settle"
    assert answer_line(EventKind.RECONCILED, old) == "looked up: paid -> paid"


def test_a_bulk_row_holds_what_record_event_stores_and_no_actor() -> None:
    """The claim and ``subscriptions import`` write events with one Core insert."""
    at = datetime(2027, 1, 1, tzinfo=UTC)
    created = ChargeCreated(
        merchant_uid="sub-k-1-1", amount=9900, period_no=1, attempt=1, lookup_before_send="late"
    )
    with acting_as("cli"):  # the import runs under the CLI's actor; its rows never named it
        row = event_row(created, at, at, subscription_id=1, charge_id=2)
    assert row == {
        "subscription_id": 1,
        "charge_id": 2,
        "kind": "charge_created",
        "data": {
            "merchant_uid": "sub-k-1-1",
            "amount": 9900,
            "period_no": 1,
            "attempt": 1,
            "lookup_before_send": "late",
        },
        "occurred_at": at,
        "recorded_at": at,
    }
    assert type(row["kind"]) is str
