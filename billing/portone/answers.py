"""What a PortOne answer means for our money, decided by pure functions (table-tested).

Every answer to ``POST /subscribe/payments/again`` is exactly one of:

- APPROVED: the card was charged (code 0, status paid, our merchant_uid and amount).
- DECLINED: processed and refused by the card issuer (code 0, status failed): no money moved.
- REFUSED: not processed (code != 0: unknown customer_uid, PG-side refusal): no money moved.
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

MAX_REASON = 500


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


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    REFUSED = "refused"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ChargeAnswer:
    outcome: Outcome
    reason: str = ""
    imp_uid: str | None = None
    code: int | None = None
    http_status: int | None = None


def classify_again(
    exchange: Exchange, merchant_uid: str, amount: int, *, resend: bool = False
) -> ChargeAnswer:
    """Classify the answer to one ``subscribe/payments/again`` call.

    ``resend`` is True when this merchant_uid was sent before: PortOne refuses to pay a paid
    merchant_uid twice with an undocumented message, so any refusal of a resend is UNKNOWN
    (look it up) rather than REFUSED.
    """
    early = _classify_transport(exchange)
    if early is not None:
        return early
    status = exchange.status
    envelope = read_envelope(exchange.body)
    if envelope is None:
        return _unknown(exchange, "unreadable answer")
    code, message, response = envelope
    if code != 0:
        if resend or not is_client_error(status):
            return _unknown(exchange, f"refused a resend or odd status: {message}")
        return ChargeAnswer(Outcome.REFUSED, _clip(message), None, code, status)
    if status != 200 or not isinstance(response, dict):
        return _unknown(exchange, "code 0 without a payment")
    return _classify_payment(response, merchant_uid, amount, status)


def _classify_transport(exchange: Exchange) -> ChargeAnswer | None:
    if exchange.failure == Transport.NOT_SENT:
        return ChargeAnswer(Outcome.TRANSIENT, _clip(f"not sent: {exchange.detail}"))
    if exchange.failure is not None or exchange.status is None:
        return ChargeAnswer(Outcome.UNKNOWN, _clip(f"no answer: {exchange.detail}"))
    if exchange.status in (401, 429):
        return ChargeAnswer(Outcome.TRANSIENT, f"HTTP {exchange.status} before processing",
                            http_status=exchange.status)  # fmt: skip
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
        return ChargeAnswer(Outcome.APPROVED, "", imp_uid, 0, status)
    if state == "failed":
        why = payment.get("fail_reason")
        return ChargeAnswer(Outcome.DECLINED, _clip(str(why or "declined")), imp_uid, 0, status)
    return ChargeAnswer(Outcome.UNKNOWN, _clip(f"payment status {state!r}"), imp_uid, 0, status)


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
    return ChargeAnswer(Outcome.UNKNOWN, _clip(reason), None, None, exchange.status)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class Found(StrEnum):
    """What a lookup by merchant_uid tells about one charge."""

    PAID = "paid"  # PortOne holds it paid
    DECLINED = "declined"  # attempts exist, the newest failed, none paid
    NOTHING = "nothing"  # PortOne has no payment for it
    ERROR = "error"  # the lookup itself failed: ask again later


@dataclass(frozen=True)
class Lookup:
    found: Found
    imp_uid: str | None = None
    reason: str = ""
    amount_matches: bool = True


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
    return Lookup(Found.PAID, imp_uid, "", same_amount(payment.get("amount"), amount))


def classify_find_all(exchange: Exchange, merchant_uid: str) -> Lookup:
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
    if any(p.get("status") == "paid" for p in ours):
        return Lookup(Found.ERROR, reason="findAll lists a paid attempt that find/paid did not")
    if not all(p.get("status") == "failed" for p in ours):
        return Lookup(Found.ERROR, reason="an attempt is neither paid nor failed yet")
    newest = max(ours, key=_failed_at)
    reason = _clip(str(newest.get("fail_reason") or "declined"))
    return Lookup(Found.DECLINED, newest.get("imp_uid"), reason)


def _failed_at(payment: dict[str, Any]) -> float:
    """When an attempt failed, for ordering; anything that is not a number counts as 0."""
    value = payment.get("failed_at")
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
