"""Billing keys by API: ``POST``, ``DELETE`` and ``GET /subscribe/customers/{customer_uid}``.

Card data (number, expiry, birth date, password digits) goes into the body of the issuing
request and nowhere else: ``CardDetails`` shows only a masked number in its repr, and every
text that comes back from PortOne is scrubbed of the card data before anyone sees it (PortOne
or a PG may echo what it was sent). The classification of answers is pure and table-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from billing.logs import REDACTED, redact
from billing.portone.answers import Exchange, Transport, read_envelope
from billing.portone.client import PortOneClient

MAX_MESSAGE = 300
CUSTOMER_LIMITS = {"customer_name": 20, "customer_tel": 20, "customer_email": 200}


@dataclass(frozen=True, repr=False)
class CardDetails:
    """What PortOne needs to issue a billing key. Never stored, never logged."""

    number: str  # digits only
    expiry: str  # YYYY-MM
    birth: str  # YYMMDD, or a 10-digit business registration number
    pwd_2digit: str | None = None

    def __repr__(self) -> str:
        return f"CardDetails(number={self.masked!r})"

    __str__ = __repr__

    @property
    def masked(self) -> str:
        """``************1111``: the last four digits only."""
        return mask_number(self.number)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.number, self.expiry, self.birth, self.pwd_2digit) if s)


def mask_number(shown: str) -> str:
    """Every character but the last four digits starred (a masked number stays masked)."""
    digits = "".join(char for char in shown if char.isdigit())
    last = digits[-4:] if len(digits) >= 4 else ""
    return "*" * max(0, len(shown.replace("-", "")) - len(last)) + last


@dataclass(frozen=True)
class Holder:
    """The customer_* fields of an issuing request (from our customer row)."""

    name: str | None = None
    email: str | None = None
    tel: str | None = None

    def fields(self) -> dict[str, str]:
        given = {"customer_name": self.name, "customer_email": self.email, "customer_tel": self.tel}
        return {
            key: value
            for key, value in given.items()
            if value and len(value) <= CUSTOMER_LIMITS[key]
        }


def scrub(text: str, card: CardDetails | None) -> str:
    """``text`` with every piece of ``card`` (and anything shaped like a card number) masked."""
    if card is not None:
        for secret in card.secrets():
            text = re.sub(rf"(?<![0-9]){re.escape(secret)}(?![0-9])", REDACTED, text)
    return redact(text)


# -- the calls -----------------------------------------------------------------------------------


def issue(
    client: PortOneClient, customer_uid: str, card: CardDetails, holder: Holder, pg: str | None
) -> Exchange:
    """``POST /subscribe/customers/{customer_uid}``: issue (or replace) the billing key."""
    body: dict[str, Any] = {
        "card_number": card.number,
        "expiry": card.expiry,
        "birth": card.birth,
        **holder.fields(),
    }
    if card.pwd_2digit:
        body["pwd_2digit"] = card.pwd_2digit
    if pg:
        body["pg"] = pg
    return _call(client, "POST", _path(customer_uid), json=body)


def delete(client: PortOneClient, customer_uid: str, reason: str | None) -> Exchange:
    """``DELETE /subscribe/customers/{customer_uid}``."""
    params = {"reason": reason} if reason else None
    return _call(client, "DELETE", _path(customer_uid), params=params)


def find(client: PortOneClient, customer_uid: str) -> Exchange:
    """``GET /subscribe/customers/{customer_uid}``."""
    return client.customer(customer_uid)


def _call(client: PortOneClient, method: str, path: str, **options: Any) -> Exchange:
    return client.call(method, path, **options)


def _path(customer_uid: str) -> str:
    return f"/subscribe/customers/{quote(customer_uid, safe='')}"


# -- what the answers mean -----------------------------------------------------------------------


class KeyOutcome(StrEnum):
    DONE = "done"  # code 0: the key is issued (or deleted, or found)
    REFUSED = "refused"  # code != 0: PortOne or the PG refused; nothing changed
    ABSENT = "absent"  # 404: PortOne has no key for this customer_uid
    NOT_SENT = "not_sent"  # the request never reached PortOne (or 401/429): nothing changed
    UNKNOWN = "unknown"  # timeout, reset, 5xx, garbage: it may or may not have happened


@dataclass(frozen=True)
class KeyAnswer:
    outcome: KeyOutcome
    message: str = ""
    card_name: str | None = None
    card_number: str | None = None  # masked to the last four digits
    code: int | None = None
    http_status: int | None = None


def classify_key(exchange: Exchange, customer_uid: str, card: CardDetails | None) -> KeyAnswer:
    """Classify an answer about a billing key; every message is scrubbed of ``card``."""
    status = exchange.status
    if exchange.failure == Transport.NOT_SENT or status in (401, 429):
        why = exchange.detail or f"HTTP {status}"
        return KeyAnswer(KeyOutcome.NOT_SENT, _clip(scrub(why, card)), http_status=status)
    if exchange.failure is not None or status is None or status >= 500:
        why = f"no answer: {exchange.detail}" if status is None else f"HTTP {status}"
        return KeyAnswer(KeyOutcome.UNKNOWN, _clip(scrub(why, card)), http_status=status)
    envelope = read_envelope(exchange.body)
    if envelope is None:
        return KeyAnswer(KeyOutcome.UNKNOWN, "unreadable answer", http_status=status)
    code, message, response = envelope
    said = _clip(scrub(message, card))
    if code != 0:
        outcome = KeyOutcome.ABSENT if status == 404 else KeyOutcome.REFUSED
        return KeyAnswer(outcome, said or f"code {code}", code=code, http_status=status)
    if not isinstance(response, dict) or response.get("customer_uid") != customer_uid:
        return KeyAnswer(
            KeyOutcome.UNKNOWN, "answer names another customer_uid", code=0, http_status=status
        )
    return _done(response, status)


def _done(response: dict[str, Any], status: int) -> KeyAnswer:
    name = response.get("card_name")
    number = response.get("card_number")
    return KeyAnswer(
        KeyOutcome.DONE,
        "",
        name if isinstance(name, str) else None,
        mask_number(number) if isinstance(number, str) and number else None,
        0,
        status,
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
