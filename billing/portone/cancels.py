"""Refunds through ``POST /payments/cancel``: the request, and what PortOne's answers mean.

Every refund carries ``checksum``, the refundable balance we believe in. PortOne applies the
cancel only while its own balance equals the checksum, so a refund can be applied at one
moment only: when the payment's balance was exactly our checksum. That makes the payment's
``cancel_history`` conclusive, whatever happened to our request:

- the cancel recorded while the balance was our checksum has our amount: APPLIED;
- the balance is still our checksum: NOT_YET (nothing applied; a re-send is safe);
- the balance went past our checksum without our amount: NEVER (it can no longer apply);
- the balance is above our checksum: BEHIND (PortOne holds fewer refunds than we believe; our
  request cannot apply unless other cancels bring the balance down to exactly our checksum).

Answers to a cancel are SUCCEEDED (code 0 and the payment shows it applied), REFUSED (code
!= 0 on a first send: nothing was done), TRANSIENT (the request never left, or 401/429) or
UNKNOWN (timeout, reset, 5xx, garbage, a refusal of a re-send: look the payment up).
The classification is pure and table-tested; ``PortOneCancels`` is the thin adapter that
sends a cancel with a ``PortOneClient``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.domain.refunds import (
    Applied,
    CancelAnswer,
    CancelOutcome,
    CancelRequest,
    RefundLookup,
)
from billing.portone.answers import Exchange, Transport, is_client_error, read_envelope
from billing.portone.client import PortOneClient

MAX_REASON = 500
CANCEL_PATH = "/payments/cancel"


# -- the gateway call ----------------------------------------------------------------------------


class PortOneCancels:
    """The refund port on a ``PortOneClient``: a cancel and a payment lookup."""

    def __init__(self, client: PortOneClient) -> None:
        self.client = client

    def cancel(self, request: CancelRequest) -> Exchange:
        return self.client.call("POST", CANCEL_PATH, json=request.body())

    def payment(self, imp_uid: str) -> Exchange:
        return self.client.payment(imp_uid)


# -- classification ------------------------------------------------------------------------------


def classify_cancel(exchange: Exchange, request: CancelRequest, *, resend: bool) -> CancelAnswer:
    """Classify the answer to one cancel. ``resend``: this refund was sent before, with an
    outcome not seen, so any refusal means "look it up" (the checksum refuses a repeat)."""
    early = _transport(exchange)
    if early is not None:
        return early
    envelope = read_envelope(exchange.body)
    if envelope is None:
        return _unknown(exchange, "unreadable answer")
    code, message, response = envelope
    if code != 0:
        if resend or not is_client_error(exchange.status):
            return _unknown(exchange, f"refused a re-send or odd status: {message}", code)
        return CancelAnswer(
            CancelOutcome.REFUSED, _clip(message or "refused"), None, None, code, exchange.status
        )
    return _processed(exchange, request, response)


def _processed(exchange: Exchange, request: CancelRequest, response: Any) -> CancelAnswer:
    """Code 0: succeeded only when the payment it answers shows this refund applied."""
    if exchange.status != 200 or not isinstance(response, dict):
        return _unknown(exchange, "code 0 without a payment", 0)
    if response.get("imp_uid") != request.imp_uid:
        return _unknown(exchange, "answer names another payment", 0)
    found = find_refund(response, request.checksum, request.amount)
    if found.applied != Applied.APPLIED:
        return _unknown(exchange, f"answer does not show the refund: {found.reason}", 0)
    return CancelAnswer(
        CancelOutcome.SUCCEEDED, "", found.cancelled, found.cancellation_id, 0, exchange.status
    )


def classify_lookup(exchange: Exchange, imp_uid: str, checksum: int, amount: int) -> RefundLookup:
    """``GET /payments/{imp_uid}``: where does this refund stand at PortOne?"""
    if exchange.failure is not None or exchange.status is None:
        return RefundLookup(Applied.ERROR, reason=_clip(f"no answer: {exchange.detail}"))
    envelope = read_envelope(exchange.body)
    if exchange.status != 200 or envelope is None or envelope[0] != 0:
        message = envelope[1] if envelope else ""
        return RefundLookup(Applied.ERROR, reason=_clip(f"HTTP {exchange.status} {message}"))
    payment = envelope[2]
    if not isinstance(payment, dict) or payment.get("imp_uid") != imp_uid:
        return RefundLookup(Applied.ERROR, reason="lookup answered another payment")
    return find_refund(payment, checksum, amount)


def find_refund(payment: dict[str, Any], checksum: int, amount: int) -> RefundLookup:
    """Find the refund of ``amount`` asked for at balance ``checksum`` in a payment."""
    paid = whole_krw(payment.get("amount"))
    if payment.get("status") not in ("paid", "cancelled") or paid is None:
        return RefundLookup(Applied.ERROR, reason=f"payment is {payment.get('status')!r}")
    history = _history(payment.get("cancel_history"))
    if history is None:
        return _by_total(payment, paid, checksum, amount)
    return _walk(history, paid, checksum, amount)


def _walk(
    history: list[tuple[int, str | None]], paid: int, checksum: int, amount: int
) -> RefundLookup:
    """Follow the balance down the history to the moment it was our checksum."""
    total = sum(cancelled for cancelled, _ in history)
    balance = paid
    for cancelled, cancellation_id in history:
        if balance == checksum:
            if cancelled == amount:
                return RefundLookup(Applied.APPLIED, total, cancellation_id)
            return _never(total, f"a cancel of {cancelled} KRW was applied at {checksum} KRW")
        balance -= cancelled
    if balance == checksum:
        return RefundLookup(Applied.NOT_YET, total)
    if balance > checksum:
        reason = f"PortOne's refundable balance is {balance} KRW, more than our {checksum}"
        return RefundLookup(Applied.BEHIND, total, None, reason)
    return _never(
        total,
        f"PortOne's refundable balance went from above {checksum} KRW to {balance} without it",
    )


def _never(total: int, reason: str) -> RefundLookup:
    return RefundLookup(Applied.NEVER, total, None, reason)


def _by_total(payment: dict[str, Any], paid: int, checksum: int, amount: int) -> RefundLookup:
    """Without a cancel history, only the cancelled total: conclusive in two cases."""
    cancelled = whole_krw(payment.get("cancel_amount"))
    if cancelled is None:
        return RefundLookup(Applied.ERROR, reason="payment without cancel_amount")
    if paid - cancelled == checksum:
        return RefundLookup(Applied.NOT_YET, cancelled)
    if paid - cancelled == checksum - amount:
        return RefundLookup(Applied.APPLIED, cancelled)
    reason = f"cancelled {cancelled} of {paid} KRW and no cancel history to tell"
    return RefundLookup(Applied.ERROR, cancelled, None, reason)


def _history(value: object) -> list[tuple[int, str | None]] | None:
    """(amount, cancellation_id) of each cancel, oldest first; None when unusable."""
    if not isinstance(value, list):
        return None
    entries: list[tuple[int, int, int, str | None]] = []
    for position, item in enumerate(value):
        amount = whole_krw(item.get("amount")) if isinstance(item, dict) else None
        if amount is None or amount <= 0:
            return None
        when = item.get("cancelled_at")
        order = when if isinstance(when, int) and not isinstance(when, bool) else 0
        cancellation_id = item.get("cancellation_id")
        named = cancellation_id if isinstance(cancellation_id, str) else None
        entries.append((order, position, amount, named))
    return [(amount, named) for _, _, amount, named in sorted(entries)]


def whole_krw(value: object) -> int | None:
    """A JSON amount (int, or a float or string with no fraction) as int KRW, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def _transport(exchange: Exchange) -> CancelAnswer | None:
    if exchange.failure == Transport.NOT_SENT:
        return CancelAnswer(
            CancelOutcome.TRANSIENT,
            _clip(f"not sent: {exchange.detail}"),
            http_status=exchange.status,
        )
    if exchange.failure is not None or exchange.status is None:
        return CancelAnswer(CancelOutcome.UNKNOWN, _clip(f"no answer: {exchange.detail}"))
    if exchange.status in (401, 429):
        return CancelAnswer(
            CancelOutcome.TRANSIENT,
            f"HTTP {exchange.status} before processing",
            http_status=exchange.status,
        )
    if exchange.status >= 500:
        return _unknown(exchange, f"HTTP {exchange.status}")
    return None


def _unknown(exchange: Exchange, reason: str, code: int | None = None) -> CancelAnswer:
    return CancelAnswer(CancelOutcome.UNKNOWN, _clip(reason), None, None, code, exchange.status)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
