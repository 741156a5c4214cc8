"""Notices we send (outgoing: payment failed, recovered, ...): kinds and delivery states.

Not PortOne's notices to us (``notice_url``): those are "PortOne webhooks" in this code base
(``billing.services.portone_webhook``).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from billing.domain import retry

DELIVERY_LEASE = timedelta(seconds=60)  # a sender owns a notice this long while it sends


class NoticeKind(StrEnum):
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_RECOVERED = "payment_recovered"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    SUBSCRIPTION_PAUSED = "subscription_paused"
    UPCOMING_RENEWAL = "upcoming_renewal"
    TRIAL_WILL_END = "trial_will_end"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent (again), at next_attempt_at
    SENDING = "sending"  # a sender holds it under a lease
    DELIVERED = "delivered"  # the receiver took it
    FAILED = "failed"  # given up on (not used by the automatic path: it retries until taken)


DUE = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


def next_attempt_after(attempts: int, jitter: float) -> timedelta:
    """How long a notice whose receiver failed ``attempts`` times waits before the next try."""
    return timedelta(seconds=retry.NOTICE.delay(attempts, jitter))
