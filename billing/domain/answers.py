"""What PortOne said about a charge, as domain values (the adapter in ``billing.portone``
turns HTTP exchanges into these; the services and the charge state machine read only these).

Every answer to a charge (``subscribe/payments/again``) is exactly one ``Outcome``; every
lookup by merchant_uid finds exactly one ``Found``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_REASON = 500


class Outcome(StrEnum):
    APPROVED = "approved"  # the card was charged (code 0, status paid, our merchant_uid, amount)
    DECLINED = "declined"  # processed and refused by the issuer: no money moved
    REFUSED = "refused"  # not processed (code != 0); believed only after a lookup finds nothing
    TRANSIENT = "transient"  # nothing was sent, or refused before processing (401, 429)
    UNKNOWN = "unknown"  # may have been processed (timeout, reset, 5xx, garbage): look it up


@dataclass(frozen=True)
class ChargeAnswer:
    outcome: Outcome
    reason: str = ""
    imp_uid: str | None = None
    code: int | None = None
    http_status: int | None = None
    receipt_url: str | None = None  # the card sales slip (매출전표) of a paid answer


class Found(StrEnum):
    """What a lookup by merchant_uid tells about one charge (every answer is final but ERROR).

    PortOne's statuses: ``paid``; ``failed``; ``cancelled``, which is a refund when the
    payment had been paid (a refund in PortOne's console) and no payment at all when it was
    cancelled before it was ever paid (a net-cancel by the PG, 망취소, after the approval
    answer was lost); ``ready``, a payment never completed. See docs/decisions.md.
    """

    PAID = "paid"  # PortOne holds it paid
    REFUNDED = "refunded"  # it was paid, then cancelled at PortOne (the console): paid + refund
    DECLINED = "declined"  # attempts exist, none moved money (failed, net-cancelled, ready)
    NOTHING = "nothing"  # PortOne has no payment for it
    ERROR = "error"  # the lookup itself failed: ask again later


@dataclass(frozen=True)
class Lookup:
    found: Found
    imp_uid: str | None = None
    reason: str = ""
    amount_matches: bool = True
    refunded: int = 0  # KRW cancelled at PortOne (REFUNDED)
    receipt_url: str | None = None  # the card sales slip of a payment PortOne holds paid


def clip(text: str) -> str:
    """A reason short enough to keep (PortOne's messages are unbounded)."""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
