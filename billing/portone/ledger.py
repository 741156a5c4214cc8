"""PortOne's own ledger, page by page: ``GET /payments/status/{status}`` (pure reading).

At most 1,000 payments a page, filtered by the time each payment reached its status, 90 days
back at most. A page that cannot be read is an error for the whole comparison (nothing is
repaired from half a ledger).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from billing.portone.answers import Exchange, read_envelope, same_amount

PAGE_SIZE = 1000
MAX_DAYS = 90


class LedgerUnreadable(Exception):
    """A page of PortOne's ledger could not be read; the reason is one line."""


@dataclass(frozen=True)
class LedgerPayment:
    """What the comparison needs of one payment PortOne holds."""

    imp_uid: str
    merchant_uid: str
    status: str  # paid | cancelled | failed | ready
    amount: int
    paid_at: int  # 0: never paid (a net-cancel)
    cancel_amount: int
    cancel_reason: str

    @property
    def moved_money(self) -> bool:
        """Paid, or paid and refunded since; a net-cancelled payment never moved money."""
        return self.status == "paid" or (self.status == "cancelled" and self.paid_at > 0)


@dataclass(frozen=True)
class LedgerPage:
    payments: list[LedgerPayment]
    next_page: int  # 0: the last page


def read_page(exchange: Exchange) -> LedgerPage:
    if exchange.failure is not None or exchange.status is None:
        raise LedgerUnreadable(f"PortOne did not answer: {exchange.detail}")
    envelope = read_envelope(exchange.body)
    if exchange.status != 200 or envelope is None or envelope[0] != 0:
        raise LedgerUnreadable(f"PortOne answered HTTP {exchange.status}")
    response = envelope[2]
    listing = response.get("list") if isinstance(response, dict) else None
    if not isinstance(listing, list):
        raise LedgerUnreadable("a ledger page without a list")
    following = response.get("next")
    next_page = following if isinstance(following, int) and not isinstance(following, bool) else 0
    return LedgerPage([_payment(item) for item in listing if isinstance(item, dict)], next_page)


def _payment(item: dict[str, Any]) -> LedgerPayment:
    amount = item.get("amount")
    if (
        not isinstance(amount, int | float)
        or isinstance(amount, bool)
        or not same_amount(amount, int(amount))
    ):
        raise LedgerUnreadable(f"payment {item.get('imp_uid')!r} with amount {amount!r}")
    return LedgerPayment(
        imp_uid=str(item.get("imp_uid") or ""),
        merchant_uid=str(item.get("merchant_uid") or ""),
        status=str(item.get("status") or ""),
        amount=int(amount),
        paid_at=_whole(item.get("paid_at")),
        cancel_amount=_whole(item.get("cancel_amount")),
        cancel_reason=str(item.get("cancel_reason") or ""),
    )


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)
