"""Refunds: the cancel request, what PortOne's answers mean, and the refund's transitions
(pure). The adapter (``billing.portone.cancels``) turns HTTP exchanges into these values; the
service (``billing.services.refunds``) locks the rows, asks these functions, and stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class RefundStatus(StrEnum):
    PENDING = "pending"  # written, not yet sent
    PROCESSING = "processing"  # sent or being sent
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused or never sent: no money moved
    UNKNOWN = "unknown"  # outcome not seen; reconciling


OPEN_REFUND_STATUSES = frozenset(
    {RefundStatus.PENDING, RefundStatus.PROCESSING, RefundStatus.UNKNOWN}
)


@dataclass(frozen=True)
class CancelRequest:
    """The body of ``POST /payments/cancel`` (amounts in integer KRW)."""

    imp_uid: str
    merchant_uid: str
    amount: int
    checksum: int  # the refundable balance we believe in before this refund
    reason: str

    def body(self) -> dict[str, Any]:
        return {
            "imp_uid": self.imp_uid,
            "merchant_uid": self.merchant_uid,
            "amount": self.amount,
            "checksum": self.checksum,
            "reason": self.reason,
        }


class CancelOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CancelAnswer:
    outcome: CancelOutcome
    reason: str = ""
    cancelled: int | None = None  # PortOne's cancelled total of the payment, when shown
    cancellation_id: str | None = None
    code: int | None = None
    http_status: int | None = None


class Applied(StrEnum):
    """What a payment's cancel history tells about one refund."""

    APPLIED = "applied"
    NOT_YET = "not_yet"
    NEVER = "never"
    BEHIND = "behind"  # PortOne's balance is above our checksum: it has fewer refunds than we
    ERROR = "error"  # the payment could not be read: ask again later


@dataclass(frozen=True)
class RefundLookup:
    applied: Applied
    cancelled: int | None = None
    cancellation_id: str | None = None
    reason: str = ""


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RESEND = "resend"
    WAIT = "wait"
    IGNORE = "ignore"  # another send or process owns the refund now


def after_cancel(
    status: RefundStatus, own_send: bool, answer: CancelAnswer, *, resend: bool
) -> Verdict:
    """PortOne answered one cancel. A success is always recorded; anything else only while
    the row is still the processing send that got it (``own_send``)."""
    if answer.outcome == CancelOutcome.SUCCEEDED:
        return Verdict.SUCCEEDED
    if status != RefundStatus.PROCESSING or not own_send:
        return Verdict.IGNORE  # the sweeper took it over: reconciliation decides
    if answer.outcome == CancelOutcome.REFUSED:
        return Verdict.FAILED
    if answer.outcome == CancelOutcome.TRANSIENT and not resend:
        return Verdict.FAILED  # never left, after the tries it had: no money moved
    return Verdict.WAIT  # unknown: look the payment up


def after_refund_lookup(
    lookup: RefundLookup, sent_at: datetime | None, wall: datetime, window: timedelta
) -> Verdict:
    """What to do with an unknown refund, given what PortOne's payment shows (pure)."""
    quiet = sent_at is None or wall - sent_at >= window  # no request of ours still in flight
    if lookup.applied == Applied.APPLIED:
        return Verdict.SUCCEEDED
    if lookup.applied == Applied.NEVER or (lookup.applied == Applied.BEHIND and quiet):
        return Verdict.FAILED
    if lookup.applied == Applied.NOT_YET and quiet:
        return Verdict.RESEND
    return Verdict.WAIT
