"""Charges: their statuses, their identity (merchant_uid) and their state machine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from billing.domain import retry
from billing.domain.answers import ChargeAnswer, Found, Lookup, Outcome

MERCHANT_UID_MAX = 40  # PortOne V1: merchant_uid maxLength
CUSTOMER_UID_MAX = 80  # PortOne V1: customer_uid maxLength
ORDER_NAME_MAX = 40  # PortOne V1: name maxLength of subscribe/payments/again
MERCHANT_UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SUBSCRIPTION_KEY_PATTERN = re.compile(r"^[a-z0-9]{12}$")


class ChargeStatus(StrEnum):
    PENDING = "pending"  # created, not yet sent
    PROCESSING = "processing"  # sent or being sent
    PAID = "paid"
    FAILED = "failed"  # declined or refused: no money moved
    UNKNOWN = "unknown"  # outcome not seen; reconciling

    @property
    def is_open(self) -> bool:
        """Open charges may still move money; a subscription has at most one."""
        return self in OPEN_CHARGE_STATUSES


OPEN_CHARGE_STATUSES = frozenset(
    {ChargeStatus.PENDING, ChargeStatus.PROCESSING, ChargeStatus.UNKNOWN}
)


@dataclass(frozen=True)
class ChargeRequest:
    """The body of ``POST /subscribe/payments/again`` (amount in integer KRW)."""

    customer_uid: str
    merchant_uid: str
    amount: int
    name: str
    card_quota: int | None = None
    buyer_name: str | None = None
    buyer_email: str | None = None
    buyer_tel: str | None = None

    def body(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "customer_uid": self.customer_uid,
            "merchant_uid": self.merchant_uid,
            "amount": self.amount,
            "name": self.name,
        }
        optional = {
            "card_quota": self.card_quota,
            "buyer_name": self.buyer_name,
            "buyer_email": self.buyer_email,
            "buyer_tel": self.buyer_tel,
        }
        fields.update({key: value for key, value in optional.items() if value is not None})
        return fields


def merchant_uid(subscription_key: str, period_no: int, attempt: int) -> str:
    """The charge identity: ``sub-<key>-<period>-<attempt>``, at most 40 characters.

    ``subscription_key`` is 12 random characters fixed when the subscription is created, so
    two databases (a restored backup, a staging copy) never derive the same merchant_uid for
    different subscriptions. A replayed task derives the same value, and PortOne refuses to
    pay a paid merchant_uid twice: that is the idempotency key of every charge.
    """
    if not SUBSCRIPTION_KEY_PATTERN.match(subscription_key):
        raise ValueError(f"bad subscription key {subscription_key!r}")
    if period_no < 1 or attempt < 1:
        raise ValueError("period_no and attempt start at 1")
    uid = f"sub-{subscription_key}-{period_no}-{attempt}"
    if len(uid) > MERCHANT_UID_MAX:
        raise ValueError(f"merchant_uid {uid!r} longer than {MERCHANT_UID_MAX}")
    return uid


# -- the charge state machine ------------------------------------------------------------------
#
# A service locks a charge row, loads its ``ChargeState``, asks one of the transitions below
# what to do, and stores the ``Step`` it gets (``billing.services.settlement.store_step``).
# Every rule about a charge's status is here, once; each branch is a row of the table tests
# in tests/unit/test_charge_machine.py and of the diagram in docs/decisions.md.


@dataclass(frozen=True)
class ChargeState:
    """What the decisions need of one charge row (and of its subscription)."""

    status: ChargeStatus
    sends: int = 0
    sent_at: datetime | None = None  # system clock: when the last send was taken
    updated_at: datetime | None = None  # system clock: the row's last change
    lookups: int = 0
    refusal: str | None = None  # PortOne refused the last send; not yet believed
    stopped: str | None = None  # "canceled" or "paused": the subscription may not be charged


@dataclass(frozen=True)
class Timing:
    """The clocks and windows a decision depends on (passed in: the domain reads no clock)."""

    wall: datetime  # the system clock now
    window: timedelta  # BILLING_RECONCILE_AFTER
    jitter: float = 0.5  # in [0, 1): random.random() in production, pinned in tests


@dataclass(frozen=True)
class Settle:
    """PortOne holds it paid: record it (with what was refunded at PortOne, if anything)."""

    imp_uid: str
    refunded: int = 0
    reason: str = ""
    receipt_url: str | None = None


@dataclass(frozen=True)
class Fail:
    """No money moved: a decline (its reason decides the decline class and dunning)."""

    reason: str


@dataclass(frozen=True)
class Resend:
    """Nothing of it is at PortOne: pending again, sent after ``after`` seconds."""

    after: float = 0.0


@dataclass(frozen=True)
class LookUp:
    """Ask PortOne about the merchant_uid after ``after`` seconds (the charge is unknown)."""

    after: float = 0.0
    refusal: str | None = None  # a refusal to believe if the lookup finds nothing


@dataclass(frozen=True)
class Void:
    """Never to be sent: the subscription was canceled or paused (no money moved)."""

    reason: str


@dataclass(frozen=True)
class Ignore:
    """Nothing to do (a duplicate message, or another process owns the charge now)."""

    why: str = ""


Step = Settle | Fail | Resend | LookUp | Void | Ignore


def voided(state: ChargeState) -> Void | None:
    """A charge about to be sent whose subscription was canceled or paused meanwhile."""
    return Void(f"voided: {state.stopped}") if state.stopped else None


def after_answer(state: ChargeState, answer: ChargeAnswer, send: int, timing: Timing) -> Step:
    """PortOne answered send number ``send`` of this charge.

    A payment is always recorded, whatever became of the row meanwhile (invariant 3); any
    other answer only while the row is still the processing send that got it."""
    if answer.outcome == Outcome.APPROVED and answer.imp_uid is not None:
        return Settle(answer.imp_uid, receipt_url=answer.receipt_url)
    if state.status != ChargeStatus.PROCESSING or state.sends != send:
        return Ignore("the sweep took it over: reconciliation decides")
    if answer.outcome == Outcome.DECLINED:
        return Fail(answer.reason)
    if answer.outcome == Outcome.TRANSIENT:
        return Resend(retry.TRANSIENT.delay(send, timing.jitter))
    if answer.outcome == Outcome.REFUSED:
        return LookUp(0.0, refusal=answer.reason)  # a complete answer: ask at once
    return LookUp(retry.FIRST_LOOKUP_DELAY)


def after_lookup(state: ChargeState, lookup: Lookup, timing: Timing) -> Step:
    """PortOne was asked about the merchant_uid (a reconciliation, or a verified notice)."""
    if lookup.found == Found.PAID and lookup.imp_uid is not None:
        return Settle(lookup.imp_uid, receipt_url=lookup.receipt_url)
    if lookup.found == Found.REFUNDED and lookup.imp_uid is not None:
        return Settle(lookup.imp_uid, lookup.refunded, lookup.reason, lookup.receipt_url)
    if state.status != ChargeStatus.UNKNOWN:
        return Ignore("settled or sent again meanwhile")
    if lookup.found == Found.DECLINED:
        return Fail(lookup.reason)
    if lookup.found == Found.NOTHING:
        return _nothing_found(state, timing)
    return LookUp(max(retry.LOOKUP_FLOOR, retry.LOOKUP.delay(state.lookups + 1, timing.jitter)))


def _nothing_found(state: ChargeState, timing: Timing) -> Step:
    """PortOne has nothing: a refusal is a decline; otherwise it is sent again once no send
    of ours can still be in flight, unless its subscription may no longer be charged."""
    if state.refusal is not None:
        return Fail(state.refusal)
    if state.sent_at is not None and timing.wall - state.sent_at < timing.window:
        remaining = (state.sent_at + timing.window - timing.wall).total_seconds()
        return LookUp(max(retry.LOOKUP_FLOOR, min(retry.LOOKUP_EVERY, remaining)))
    return voided(state) or Resend()


def looked_up_lately(looked_up_at: datetime | None, timing: Timing) -> bool:
    """PortOne answered a lookup of the charge within the reconciliation window."""
    return looked_up_at is not None and timing.wall - looked_up_at < timing.window


def is_stuck(state: ChargeState, timing: Timing) -> bool:
    """Processing and silent past the window: its worker died, or the commit of its outcome
    was lost. It is then looked up (never simply sent again)."""
    return (
        state.status == ChargeStatus.PROCESSING
        and state.updated_at is not None
        and state.updated_at <= timing.wall - timing.window
    )
