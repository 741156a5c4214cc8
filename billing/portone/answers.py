"""What a PortOne answer means for our money, decided by pure functions (table-tested).

Every answer to ``POST /subscribe/payments/again`` is exactly one of:

- APPROVED: the card was charged (code 0, status paid, our merchant_uid and amount).
- DECLINED: processed and refused by the card issuer (code 0, status failed): no money moved.
- REFUSED: not processed (code != 0: unknown customer_uid, PG-side refusal, "already paid").
  Believed only after a lookup by merchant_uid finds nothing: the refusal of a merchant_uid
  PortOne already paid (a replay after a restore from a backup) says so in undocumented
  words, so every refusal is looked up first (SPEC 2.9, 2.11).
- TRANSIENT: nothing was sent, or it was refused before processing (401, 429): send again.
- UNKNOWN: the request may have been processed (timeout, reset, 5xx, garbage): ask PortOne
  by merchant_uid before doing anything else with the subscription.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.domain.answers import MAX_REASON, ChargeAnswer, Found, Lookup, Outcome, clip

MAX_RECEIPT_URL = 2048

__all__ = [
    "MAX_REASON",
    "ChargeAnswer",
    "Exchange",
    "Found",
    "Lookup",
    "Outcome",
    "Transport",
    "classify_again",
    "classify_find_all",
    "classify_find_paid",
    "read_envelope",
    "same_amount",
]


class Transport(StrEnum):
    """How the HTTP exchange ended when no complete answer came back."""

    NOT_SENT = "not_sent"  # connect error or pool timeout: the request never left
    NO_ANSWER = "no_answer"  # sent (or maybe sent), then timeout, reset or protocol error


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange as the transport saw it; ``body`` is the raw answer."""

    status: int | None = None
    body: bytes = b""
    failure: Transport | None = None
    detail: str = ""


def classify_again(exchange: Exchange, merchant_uid: str, amount: int) -> ChargeAnswer:
    """Classify the answer to one ``subscribe/payments/again`` call."""
    early = _classify_transport(exchange)
    if early is not None:
        return early
    status = exchange.status
    envelope = read_envelope(exchange.body)
    if envelope is None:
        return _unknown(exchange, "unreadable answer")
    code, message, response = envelope
    if code != 0:
        if not is_client_error(status):
            return _unknown(exchange, f"refusal with HTTP {status}: {message}")
        return ChargeAnswer(Outcome.REFUSED, clip(message or "refused"), None, code, status)
    if status != 200 or not isinstance(response, dict):
        return _unknown(exchange, "code 0 without a payment")
    return _classify_payment(response, merchant_uid, amount, status)


def _classify_transport(exchange: Exchange) -> ChargeAnswer | None:
    if exchange.failure == Transport.NOT_SENT:
        return ChargeAnswer(Outcome.TRANSIENT, clip(f"not sent: {exchange.detail}"))
    if exchange.failure is not None or exchange.status is None:
        return ChargeAnswer(Outcome.UNKNOWN, clip(f"no answer: {exchange.detail}"))
    if exchange.status in (401, 429):
        return ChargeAnswer(
            Outcome.TRANSIENT,
            f"HTTP {exchange.status} before processing",
            http_status=exchange.status,
        )
    if exchange.status >= 500:
        return _unknown(exchange, f"HTTP {exchange.status}")
    return None


def _classify_payment(
    payment: dict[str, Any], merchant_uid: str, amount: int, status: int
) -> ChargeAnswer:
    imp_uid = payment.get("imp_uid")
    imp_uid = imp_uid if isinstance(imp_uid, str) and imp_uid else None
    if payment.get("merchant_uid") != merchant_uid:
        return ChargeAnswer(
            Outcome.UNKNOWN, "answer names another merchant_uid", imp_uid, 0, status
        )
    state = payment.get("status")
    if state == "paid":
        if imp_uid is None or not same_amount(payment.get("amount"), amount):
            reason = "paid answer without imp_uid or with another amount"
            return ChargeAnswer(Outcome.UNKNOWN, reason, imp_uid, 0, status)
        return ChargeAnswer(Outcome.APPROVED, "", imp_uid, 0, status, receipt_of(payment))
    if state == "failed":
        why = payment.get("fail_reason")
        return ChargeAnswer(Outcome.DECLINED, clip(str(why or "declined")), imp_uid, 0, status)
    return ChargeAnswer(Outcome.UNKNOWN, clip(f"payment status {state!r}"), imp_uid, 0, status)


def receipt_of(payment: dict[str, Any]) -> str | None:
    """``receipt_url`` when it is an http(s) URL of a sane length, else None."""
    url = payment.get("receipt_url")
    if not isinstance(url, str) or len(url) > MAX_RECEIPT_URL:
        return None
    return url if url.startswith(("https://", "http://")) and url.isprintable() else None


def same_amount(value: object, amount: int) -> bool:
    """True when a JSON amount (int, or a float with no fraction) equals ``amount`` KRW."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        return Decimal(str(value)) == Decimal(amount)
    except ArithmeticError:
        return False


def read_envelope(body: bytes) -> tuple[int, str, Any] | None:
    """``{code, message, response}`` or None when the body is not such an envelope
    (shared by every classifier of PortOne answers)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    code = document.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    message = document.get("message")
    return code, message if isinstance(message, str) else "", document.get("response")


def is_client_error(status: int | None) -> bool:
    """An answer PortOne gives when it did not process the request (200 with code != 0, 4xx)."""
    return status is not None and (status == 200 or 400 <= status < 500)


def _unknown(exchange: Exchange, reason: str) -> ChargeAnswer:
    return ChargeAnswer(Outcome.UNKNOWN, clip(reason), None, None, exchange.status)


def classify_find_paid(exchange: Exchange, merchant_uid: str, amount: int) -> Lookup:
    """``GET /payments/find/{merchant_uid}/paid``: 404 means nothing is paid."""
    payment = _lookup_response(exchange)
    if isinstance(payment, Lookup):
        return payment
    if not isinstance(payment, dict) or payment.get("merchant_uid") != merchant_uid:
        return Lookup(Found.ERROR, reason="lookup answered another payment")
    imp_uid = payment.get("imp_uid")
    if payment.get("status") != "paid" or not isinstance(imp_uid, str):
        return Lookup(Found.ERROR, reason=f"lookup for paid answered {payment.get('status')!r}")
    matches = same_amount(payment.get("amount"), amount)
    return Lookup(Found.PAID, imp_uid, "", matches, receipt_url=receipt_of(payment))


def classify_find_all(exchange: Exchange, merchant_uid: str, amount: int) -> Lookup:
    """``GET /payments/findAll/{merchant_uid}``: every attempt; 404 means none."""
    listing = _lookup_response(exchange)
    if isinstance(listing, Lookup):
        return listing
    payments = listing.get("list") if isinstance(listing, dict) else None
    if not isinstance(payments, list):
        return Lookup(Found.ERROR, reason="findAll without a list")
    ours = [p for p in payments if isinstance(p, dict) and p.get("merchant_uid") == merchant_uid]
    if not ours:
        return Lookup(Found.NOTHING)
    odd = _odd_statuses(ours)
    if odd is not None:
        return Lookup(Found.ERROR, reason=odd)
    refunded = [p for p in ours if p.get("status") == "cancelled" and _number(p, "paid_at") > 0]
    if refunded:
        return _refunded(max(refunded, key=_when), amount)
    newest = max(ours, key=_when)
    return Lookup(Found.DECLINED, newest.get("imp_uid"), _unpaid_reason(newest))


def _odd_statuses(attempts: list[dict[str, Any]]) -> str | None:
    """Why the attempts cannot be judged (a paid one find/paid missed, an unknown status)."""
    statuses = {str(p.get("status")) for p in attempts}
    if "paid" in statuses:
        return "findAll lists a paid attempt that find/paid did not"
    unknown = sorted(statuses - set(UNPAID_REASONS) - {"cancelled"})
    return clip(f"attempts with status {', '.join(unknown)}") if unknown else None


UNPAID_REASONS = {
    "failed": "declined",
    "ready": "PortOne holds it ready: never completed, not paid",
}
NET_CANCEL = "cancelled at PortOne before it was paid (net-cancel)"


def _unpaid_reason(payment: dict[str, Any]) -> str:
    status = payment.get("status")
    if status == "failed":
        return clip(str(payment.get("fail_reason") or "declined"))
    if status == "cancelled":
        why = payment.get("cancel_reason")
        return clip(f"{NET_CANCEL}: {why}" if why else NET_CANCEL)
    return UNPAID_REASONS[str(status)]


def _refunded(payment: dict[str, Any], amount: int) -> Lookup:
    """Paid, then cancelled at PortOne: the period was paid and the money given back."""
    cancelled = _number(payment, "cancel_amount")  # status cancelled: cancelled in full
    refunded = min(amount, int(cancelled)) if cancelled >= 1 else amount
    reason = clip(f"cancelled at PortOne after it was paid: {payment.get('cancel_reason') or ''}")
    return Lookup(
        Found.REFUNDED,
        payment.get("imp_uid"),
        reason.rstrip(": "),
        same_amount(payment.get("amount"), amount),
        refunded,
        receipt_of(payment),
    )


def _when(payment: dict[str, Any]) -> float:
    """When an attempt last changed, for ordering; anything that is not a number counts 0."""
    return max(_number(payment, key) for key in ("failed_at", "cancelled_at", "paid_at"))


def _number(payment: dict[str, Any], key: str) -> float:
    value = payment.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _lookup_response(exchange: Exchange) -> Any:
    """The ``response`` of a successful lookup, or the Lookup that ends it (404, errors)."""
    if exchange.failure is not None or exchange.status is None:
        return Lookup(Found.ERROR, reason=f"no answer: {exchange.detail}")
    envelope = read_envelope(exchange.body)
    if exchange.status == 404 and envelope is not None and envelope[0] != 0:
        return Lookup(Found.NOTHING)
    if exchange.status != 200 or envelope is None or envelope[0] != 0:
        return Lookup(Found.ERROR, reason=f"HTTP {exchange.status}")
    return envelope[2]
