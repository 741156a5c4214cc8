"""Charge statuses and the charge identity (merchant_uid)."""

from __future__ import annotations

import re
from enum import StrEnum

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
