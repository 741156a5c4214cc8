"""The event log's schema: every kind the product writes, and the fields each one holds.

An event is one frozen payload; its type names its kind (``ChargePaid.kind`` is
``charge_paid``), so a kind cannot be written with another kind's fields. ``event_data``
turns a payload into the JSON object stored in ``events.data``: one key per field, in the
order declared here, tuples as lists. A field that not every writer of a kind passes is
declared ``... | Absent = ABSENT`` and is left out of the stored object when absent (a
``None`` is stored as ``null``). Who acted (``actor``, ``reason``) is added by
``services.history.record_event``, not declared here.

Kinds are stored as plain strings. Readers take any string: a row written by an older or
a newer version, with a kind not listed here, is shown as it was recorded.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum, StrEnum
from typing import Any, ClassVar, Final, Literal, TypedDict

from billing.domain.dunning import DeclineAction


class EventKind(StrEnum):
    # subscriptions
    SUBSCRIPTION_CREATED = "subscription_created"
    CANCEL_SCHEDULED = "cancel_scheduled"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    SUBSCRIPTION_PAUSED = "subscription_paused"
    SUBSCRIPTION_RESUMED = "subscription_resumed"
    PLAN_CHANGED = "plan_changed"
    CARD_UPDATED = "card_updated"
    RETRY_NOW = "retry_now"
    SET_ASIDE = "set_aside"
    PERIOD_SKIPPED = "period_skipped"
    ATTEMPT_POSTPONED = "attempt_postponed"
    SCHEDULES_TAKEN_OVER = "schedules_taken_over"
    # charges
    CHARGE_CREATED = "charge_created"
    LOOKUP_BEFORE_SEND = "lookup_before_send"
    GATEWAY_ANSWER = "gateway_answer"
    CHARGE_STUCK = "charge_stuck"
    RECONCILED = "reconciled"
    PORTONE_NOTICE = "portone_notice"
    CHARGE_PAID = "charge_paid"
    DUPLICATE_PAYMENT = "duplicate_payment"
    PAID_AFTER_CANCEL = "paid_after_cancel"
    PAID_AFTER_PAUSE = "paid_after_pause"
    PAYMENT_FOR_SUPERSEDED_PERIOD = "payment_for_superseded_period"
    PAYMENT_RECOVERED = "payment_recovered"
    CHARGE_FAILED = "charge_failed"
    CHARGE_VOIDED = "charge_voided"
    # dunning: one kind per DeclineAction, f"dunning_{action}"
    DUNNING_RETRY = "dunning_retry"
    DUNNING_AWAIT_CARD = "dunning_await_card"
    DUNNING_CANCEL = "dunning_cancel"
    DUNNING_PAUSE = "dunning_pause"
    DUNNING_NONE = "dunning_none"
    # refunds
    REFUND_REQUESTED = "refund_requested"
    REFUND_ANSWER = "refund_answer"
    REFUND_RECONCILED = "refund_reconciled"
    REFUND_FAILED = "refund_failed"
    CHARGE_REFUNDED = "charge_refunded"
    # notices
    NOTICE_QUEUED = "notice_queued"
    NOTICE_DELIVERED = "notice_delivered"
    NOTICE_RESEND = "notice_resend"
    # customers and billing keys (no subscription_id)
    CUSTOMER_SAVED = "customer_saved"
    BILLING_KEY_REGISTERED = "billing_key_registered"
    BILLING_KEY_DELETED = "billing_key_deleted"
    BILLING_KEY_VERIFIED = "billing_key_verified"


class _Absent(Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent.ABSENT
Absent = Literal[_Absent.ABSENT]


@dataclass(frozen=True, kw_only=True)
class EventPayload:
    """The fields of one kind of event (every subclass sets ``kind``)."""

    kind: ClassVar[EventKind]


def event_data(payload: EventPayload) -> dict[str, Any]:
    """The JSON object stored in ``events.data`` for ``payload``."""
    data: dict[str, Any] = {}
    for item in fields(payload):
        value = getattr(payload, item.name)
        if value is not ABSENT:
            data[item.name] = _stored(value)
    return data


def _stored(value: object) -> object:
    if isinstance(value, tuple):
        return [_stored(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


# -- subscriptions -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SubscriptionCreated(EventPayload):
    """A subscription was created (``customer_uid`` by the API and CLI, ``imported`` by
    ``subscriptions import``)."""

    kind: ClassVar[EventKind] = EventKind.SUBSCRIPTION_CREATED
    customer_uid: str | Absent = ABSENT
    plan_id: str
    plan_version: int
    status: str
    imported: bool | Absent = ABSENT
    next_charge_at: str | None  # ISO 8601


@dataclass(frozen=True, kw_only=True)
class _Transition(EventPayload):
    """A lifecycle action on a subscription: its status before, and the row after."""

    status_before: str
    status: str
    plan_id: str
    next_plan_id: str | None
    cancel_at_period_end: bool
    next_charge_at: str | None
    detail: str | Absent = ABSENT  # why, for a cancel


@dataclass(frozen=True, kw_only=True)
class CancelScheduled(_Transition):
    kind: ClassVar[EventKind] = EventKind.CANCEL_SCHEDULED


@dataclass(frozen=True, kw_only=True)
class SubscriptionPaused(_Transition):
    kind: ClassVar[EventKind] = EventKind.SUBSCRIPTION_PAUSED


@dataclass(frozen=True, kw_only=True)
class SubscriptionResumed(_Transition):
    kind: ClassVar[EventKind] = EventKind.SUBSCRIPTION_RESUMED


@dataclass(frozen=True, kw_only=True)
class PlanChanged(_Transition):
    kind: ClassVar[EventKind] = EventKind.PLAN_CHANGED


@dataclass(frozen=True, kw_only=True)
class SubscriptionCanceled(EventPayload):
    """Canceled: by a lifecycle action (the fields of a transition, with ``detail``), or by
    the scheduler at the renewal of a cancel at period end (``reason`` only)."""

    kind: ClassVar[EventKind] = EventKind.SUBSCRIPTION_CANCELED
    status_before: str | Absent = ABSENT
    status: str | Absent = ABSENT
    plan_id: str | Absent = ABSENT
    next_plan_id: str | Absent | None = ABSENT
    cancel_at_period_end: bool | Absent = ABSENT
    next_charge_at: str | Absent | None = ABSENT
    detail: str | Absent = ABSENT
    reason: str | Absent = ABSENT


@dataclass(frozen=True, kw_only=True)
class CardUpdated(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CARD_UPDATED
    next_charge_at: str | None
    retry_when_in_flight_charge_fails: bool


@dataclass(frozen=True, kw_only=True)
class RetryNow(EventPayload):
    kind: ClassVar[EventKind] = EventKind.RETRY_NOW
    next_charge_at: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class SetAside(EventPayload):
    kind: ClassVar[EventKind] = EventKind.SET_ASIDE
    reason: str


@dataclass(frozen=True, kw_only=True)
class PeriodSkipped(EventPayload):
    kind: ClassVar[EventKind] = EventKind.PERIOD_SKIPPED
    reason: str


@dataclass(frozen=True, kw_only=True)
class AttemptPostponed(EventPayload):
    kind: ClassVar[EventKind] = EventKind.ATTEMPT_POSTPONED
    reason: str
    until: str  # ISO 8601


@dataclass(frozen=True, kw_only=True)
class SchedulesTakenOver(EventPayload):
    """PortOne's hosted schedules of the customer were revoked and read back (``billing
    import portone-schedules``): charged here from ``first_charge_at`` (None: not charged
    here, the subscription is ``status``, e.g. canceled while it was held)."""

    kind: ClassVar[EventKind] = EventKind.SCHEDULES_TAKEN_OVER
    revoked: tuple[str, ...]  # PortOne's merchant_uids, now ours to charge
    fired: tuple[str, ...]  # charged by PortOne after the hold: never charged here
    declined: tuple[str, ...]  # declined at PortOne after the hold: not retried here
    first_charge_at: str | None  # ISO 8601
    status: str


# -- charges -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChargeCreated(EventPayload):
    """A charge row was written: by the claim (``lookup_before_send`` when it is looked up
    before it is sent), or by the ledger reconciliation (``source``)."""

    kind: ClassVar[EventKind] = EventKind.CHARGE_CREATED
    merchant_uid: str
    amount: int
    period_no: int
    attempt: int
    lookup_before_send: str | Absent = ABSENT
    source: str | Absent = ABSENT


@dataclass(frozen=True, kw_only=True)
class LookupBeforeSend(EventPayload):
    kind: ClassVar[EventKind] = EventKind.LOOKUP_BEFORE_SEND
    merchant_uid: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class GatewayAnswer(EventPayload):
    kind: ClassVar[EventKind] = EventKind.GATEWAY_ANSWER
    merchant_uid: str
    amount: int
    send: int
    outcome: str
    http_status: int | None
    code: int | None
    reason: str
    imp_uid: str | None


@dataclass(frozen=True, kw_only=True)
class ChargeStuck(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CHARGE_STUCK
    merchant_uid: str


@dataclass(frozen=True, kw_only=True)
class Reconciled(EventPayload):
    """A lookup by merchant_uid: what PortOne holds (``found``) and the step the charge
    machine took (``Settle``, ``Fail``, ...; rows written before that machine hold
    ``verdict`` instead)."""

    kind: ClassVar[EventKind] = EventKind.RECONCILED
    merchant_uid: str
    found: str
    step: str
    imp_uid: str | None
    reason: str
    amount_matches: bool
    refusal: str | None
    lookup: int


@dataclass(frozen=True, kw_only=True)
class PortoneNotice(EventPayload):
    kind: ClassVar[EventKind] = EventKind.PORTONE_NOTICE
    merchant_uid: str
    imp_uid: str
    portone_status: str
    charge_status: str
    verdict: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ChargePaid(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CHARGE_PAID
    merchant_uid: str
    amount: int
    imp_uid: str
    period_no: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class DuplicatePayment(EventPayload):
    kind: ClassVar[EventKind] = EventKind.DUPLICATE_PAYMENT
    merchant_uid: str
    imp_uid: str | None
    amount: int
    first_charge_id: int
    action: str  # what the operator should do


@dataclass(frozen=True, kw_only=True)
class _LatePayment(EventPayload):
    merchant_uid: str
    amount: int
    imp_uid: str | None
    action: str  # what the operator may do


@dataclass(frozen=True, kw_only=True)
class PaidAfterCancel(_LatePayment):
    kind: ClassVar[EventKind] = EventKind.PAID_AFTER_CANCEL


@dataclass(frozen=True, kw_only=True)
class PaidAfterPause(_LatePayment):
    kind: ClassVar[EventKind] = EventKind.PAID_AFTER_PAUSE


@dataclass(frozen=True, kw_only=True)
class PaymentForSupersededPeriod(EventPayload):
    kind: ClassVar[EventKind] = EventKind.PAYMENT_FOR_SUPERSEDED_PERIOD
    period_no: int


@dataclass(frozen=True, kw_only=True)
class PaymentRecovered(EventPayload):
    kind: ClassVar[EventKind] = EventKind.PAYMENT_RECOVERED
    attempt: int


@dataclass(frozen=True, kw_only=True)
class ChargeFailed(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CHARGE_FAILED
    merchant_uid: str
    amount: int
    reason: str
    decline_class: str
    period_no: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class ChargeVoided(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CHARGE_VOIDED
    merchant_uid: str
    amount: int
    reason: str


# -- dunning -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _DunningStep(EventPayload):
    """What a decline (or the end of dunning) did to the subscription."""

    status: str
    next_charge_at: str | None


@dataclass(frozen=True, kw_only=True)
class DunningRetry(_DunningStep):
    kind: ClassVar[EventKind] = EventKind.DUNNING_RETRY


@dataclass(frozen=True, kw_only=True)
class DunningAwaitCard(_DunningStep):
    kind: ClassVar[EventKind] = EventKind.DUNNING_AWAIT_CARD


@dataclass(frozen=True, kw_only=True)
class DunningCancel(_DunningStep):
    kind: ClassVar[EventKind] = EventKind.DUNNING_CANCEL


@dataclass(frozen=True, kw_only=True)
class DunningPause(_DunningStep):
    kind: ClassVar[EventKind] = EventKind.DUNNING_PAUSE


@dataclass(frozen=True, kw_only=True)
class DunningNone(_DunningStep):
    kind: ClassVar[EventKind] = EventKind.DUNNING_NONE


DUNNING_EVENTS: Final[Mapping[DeclineAction, type[_DunningStep]]] = {
    DeclineAction.RETRY: DunningRetry,
    DeclineAction.AWAIT_CARD: DunningAwaitCard,
    DeclineAction.CANCEL: DunningCancel,
    DeclineAction.PAUSE: DunningPause,
    DeclineAction.NONE: DunningNone,
}


def dunning_event(action: DeclineAction, status: str, next_charge_at: str | None) -> EventPayload:
    """The event of a dunning step (``dunning_<action>``)."""
    return DUNNING_EVENTS[action](status=status, next_charge_at=next_charge_at)


# -- refunds -------------------------------------------------------------------------------------


class RefundFields(TypedDict):
    """What every event of a refund says about it (its charge's ids, the refund's terms)."""

    refund_id: int
    merchant_uid: str
    imp_uid: str | None
    amount: int
    checksum: int  # the refundable balance PortOne must hold
    refund_reason: str


@dataclass(frozen=True, kw_only=True)
class _RefundEvent(EventPayload):
    refund_id: int
    merchant_uid: str
    imp_uid: str | None
    amount: int
    checksum: int
    refund_reason: str


@dataclass(frozen=True, kw_only=True)
class RefundRequested(_RefundEvent):
    kind: ClassVar[EventKind] = EventKind.REFUND_REQUESTED


@dataclass(frozen=True, kw_only=True)
class RefundAnswer(_RefundEvent):
    kind: ClassVar[EventKind] = EventKind.REFUND_ANSWER
    send: int
    outcome: str
    http_status: int | None
    code: int | None
    reason: str
    gateway_cancelled: int | None


@dataclass(frozen=True, kw_only=True)
class RefundReconciled(_RefundEvent):
    kind: ClassVar[EventKind] = EventKind.REFUND_RECONCILED
    found: str
    verdict: str
    gateway_cancelled: int | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class RefundFailed(_RefundEvent):
    kind: ClassVar[EventKind] = EventKind.REFUND_FAILED
    reason: str


@dataclass(frozen=True, kw_only=True)
class ChargeRefunded(EventPayload):
    """Money given back: by our refund (its ``RefundFields``, ``cancellation_id``,
    ``refundable``), or found refunded at PortOne's console (``source``, ``reason``)."""

    kind: ClassVar[EventKind] = EventKind.CHARGE_REFUNDED
    refund_id: int | Absent = ABSENT
    merchant_uid: str
    imp_uid: str | None
    amount: int  # of this refund
    checksum: int | Absent = ABSENT
    refund_reason: str | Absent = ABSENT
    cancellation_id: str | Absent | None = ABSENT
    refunded_amount: int  # of the charge, in all
    refundable: int | Absent = ABSENT
    source: str | Absent = ABSENT
    reason: str | Absent = ABSENT


# -- notices -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NoticeQueued(EventPayload):
    kind: ClassVar[EventKind] = EventKind.NOTICE_QUEUED
    notice: str  # the NoticeKind
    channels: tuple[str, ...]
    event_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class NoticeDelivered(EventPayload):
    kind: ClassVar[EventKind] = EventKind.NOTICE_DELIVERED
    notice: str
    channel: str
    event_id: str
    attempts: int


@dataclass(frozen=True, kw_only=True)
class NoticeResend(EventPayload):
    kind: ClassVar[EventKind] = EventKind.NOTICE_RESEND
    notice: str
    channel: str
    event_id: str
    status_before: str


# -- customers and billing keys ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CustomerSaved(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CUSTOMER_SAVED
    customer_uid: str
    created: bool


@dataclass(frozen=True, kw_only=True)
class BillingKeyRegistered(EventPayload):
    """A key was issued: by ``customers register`` (``card_name``, ``pg``) or by a key-in
    first payment (``via``, ``merchant_uid``). ``card_number`` is masked."""

    kind: ClassVar[EventKind] = EventKind.BILLING_KEY_REGISTERED
    customer_uid: str
    card_name: str | Absent | None = ABSENT
    card_number: str
    pg: str | Absent | None = ABSENT
    via: str | Absent = ABSENT
    merchant_uid: str | Absent = ABSENT


@dataclass(frozen=True, kw_only=True)
class BillingKeyDeleted(EventPayload):
    kind: ClassVar[EventKind] = EventKind.BILLING_KEY_DELETED
    customer_uid: str
    card_name: str | None
    card_number: str | None
    reason: str | None
    forced: bool


@dataclass(frozen=True, kw_only=True)
class BillingKeyVerified(EventPayload):
    kind: ClassVar[EventKind] = EventKind.BILLING_KEY_VERIFIED
    customer_uid: str
    card_name: str | None
    card_number: str | None
