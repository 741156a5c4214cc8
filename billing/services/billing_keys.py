"""Issuing and deleting a customer's billing key through PortOne's REST API.

The card data is checked here first (so that a typo costs no call), handed to PortOne, and
forgotten: it is never stored, never logged, and every message that could carry it is
scrubbed. The event log keeps only the issuer's name and the last four digits.

The customer must already exist (``billing customers add``): its row names the key holder
sent to PortOne, and a key nobody subscribes with is of no use to this product.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.api_tables import CustomerCard
from billing.db.tables import Customer, Subscription
from billing.domain.events import BillingKeyDeleted, BillingKeyRegistered, BillingKeyVerified
from billing.errors import BillingError, Conflict, InvalidInput, NotFound
from billing.logs import log
from billing.portone import keys
from billing.portone.client import PortOneClient
from billing.portone.keys import CardDetails, Holder, KeyAnswer, KeyOutcome, mask_number
from billing.services.customers import check_customer_uid, get_customer
from billing.services.history import record_event
from billing.services.subscriptions import card_updated

logger = logging.getLogger("billing.billing_keys")

CARD_NUMBER = re.compile(r"^[0-9]+(?:[- ][0-9]+)*$")
CARD_DIGITS = (15, 16)
EXPIRY = re.compile(r"^([0-9]{4})-([0-9]{2})$")
BIRTH_DATE = re.compile(r"^[0-9]{2}([0-9]{2})([0-9]{2})$")
BUSINESS_NUMBER = re.compile(r"^[0-9]{10}$")
PASSWORD_2 = re.compile(r"^[0-9]{2}$")
REASON_MAX = 200
LIVE = ("trialing", "active", "past_due", "paused")


class GatewayRefused(BillingError):
    """PortOne refused, or could not be reached, or its answer was not seen."""


class KeyNotFound(InvalidInput):
    """PortOne has no billing key for the customer_uid (the checkout did not issue one)."""


@dataclass(frozen=True)
class KeyResult:
    customer_uid: str
    action: str  # registered | deleted | verified
    card_name: str | None
    card_number: str | None  # the last four digits, the rest starred

    def view(self) -> dict[str, str | None]:
        return {
            "customer_uid": self.customer_uid,
            "billing_key": self.action,
            "card_name": self.card_name,
            "card_number": self.card_number,
        }


@dataclass(frozen=True)
class VerifiedKey:
    key: KeyResult
    retried: list[int]  # past-due subscriptions retried at once

    def view(self) -> dict[str, object]:
        return {**self.key.view(), "retried": self.retried}


# -- checking card data (never echoing it) -------------------------------------------------------


def parse_card(
    card_number: str, expiry: str, birth: str, pwd_2digit: str | None, today: date
) -> CardDetails:
    """The card data, checked; InvalidInput names the option, never the value."""
    return CardDetails(
        number=_card_number(card_number),
        expiry=_expiry(expiry, today),
        birth=_birth(birth),
        pwd_2digit=_password(pwd_2digit),
    )


def _card_number(text: str) -> str:
    stripped = text.strip()
    digits = re.sub(r"[- ]", "", stripped)
    if not CARD_NUMBER.match(stripped) or len(digits) not in CARD_DIGITS:
        raise InvalidInput("--card-number must be 15 or 16 digits (dashes allowed)")
    if not luhn_ok(digits):
        raise InvalidInput("--card-number is not a valid card number (its check digit is wrong)")
    return digits


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _expiry(text: str, today: date) -> str:
    match = EXPIRY.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InvalidInput("--expiry must be YYYY-MM (the card's expiry month)")
    if (int(match.group(1)), int(match.group(2))) < (today.year, today.month):
        raise InvalidInput("--expiry is in the past: the card has expired")
    return match.group(0)


def _birth(text: str) -> str:
    value = text.strip()
    if BUSINESS_NUMBER.match(value):
        return value
    match = BIRTH_DATE.match(value)
    if not match or not (1 <= int(match.group(1)) <= 12 and 1 <= int(match.group(2)) <= 31):
        raise InvalidInput(
            "--birth must be the holder's birth date YYMMDD (6 digits), or the 10-digit "
            "business registration number for a corporate card"
        )
    return value


def _password(text: str | None) -> str | None:
    if text is None:
        return None
    if not PASSWORD_2.match(text.strip()):
        raise InvalidInput("--pwd-2digit must be the first 2 digits of the card password")
    return text.strip()


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    trimmed = " ".join(reason.split())
    if not trimmed or len(trimmed) > REASON_MAX:
        raise InvalidInput(f"--reason must be 1-{REASON_MAX} characters")
    return trimmed


# -- the services --------------------------------------------------------------------------------


def register_key(
    app: App, client: PortOneClient, customer_uid: str, card: CardDetails, pg: str | None
) -> KeyResult:
    """Issue (or replace) the billing key of an existing customer."""
    check_customer_uid(customer_uid)
    with app.transaction() as session:
        holder = _holder(get_customer(session, customer_uid))
    answer = keys.classify_key(
        keys.issue(client, customer_uid, card, holder, pg), customer_uid, card
    )
    _log("billing_key_register", customer_uid, answer)
    if answer.outcome != KeyOutcome.DONE:
        raise _refusal("register a billing key for", customer_uid, answer)
    now = app.clocks.billing.now()
    with app.transaction() as session:
        record_event(
            session,
            BillingKeyRegistered(
                customer_uid=customer_uid,
                card_name=answer.card_name,
                card_number=card.masked,
                pg=pg,
            ),
            now,
        )
        card_updated(session, customer_uid, now)  # a new card: retry what is past due at once
        remember_card(session, customer_uid, answer.card_name, card.masked, now)
    return KeyResult(customer_uid, "registered", answer.card_name, card.masked)


def delete_key(
    app: App, client: PortOneClient, customer_uid: str, reason: str | None, *, force: bool
) -> KeyResult:
    """Delete the billing key of an existing customer; refused while a subscription still
    needs it, unless ``force``."""
    check_customer_uid(customer_uid)
    reason = check_reason(reason)
    with app.transaction() as session:
        live = _live_subscriptions(session, get_customer(session, customer_uid))
    if live and not force:
        raise Conflict(
            f"customer {customer_uid!r} has {live} subscription(s) that will be charged with "
            "this key: cancel them first, or delete anyway with --force"
        )
    answer = keys.classify_key(keys.delete(client, customer_uid, reason), customer_uid, None)
    if answer.outcome == KeyOutcome.UNKNOWN:
        answer = _confirm_deleted(client, customer_uid, answer)
    _log("billing_key_delete", customer_uid, answer)
    if answer.outcome != KeyOutcome.DONE:
        raise _refusal("delete the billing key of", customer_uid, answer)
    now = app.clocks.billing.now()
    with app.transaction() as session:
        record_event(
            session,
            BillingKeyDeleted(
                customer_uid=customer_uid,
                card_name=answer.card_name,
                card_number=answer.card_number,
                reason=reason,
                forced=bool(live),
            ),
            now,
        )
        forget_card(session, customer_uid, now)
    return KeyResult(customer_uid, "deleted", answer.card_name, answer.card_number)


def verify_key(app: App, client: PortOneClient, customer_uid: str) -> VerifiedKey:
    """After the checkout's ``IMP.request_pay``: ask PortOne whether the customer now has a
    billing key (``GET /subscribe/customers/{customer_uid}``). When it has, its masked card is
    remembered and every past-due subscription of the customer is retried at once."""
    check_customer_uid(customer_uid)
    with app.transaction() as session:
        get_customer(session, customer_uid)
    answer = keys.classify_key(keys.find(client, customer_uid), customer_uid, None)
    _log("billing_key_verify", customer_uid, answer)
    if answer.outcome == KeyOutcome.ABSENT:
        raise KeyNotFound(
            f"PortOne has no billing key for {customer_uid!r}: the checkout (IMP.request_pay "
            "with this customer_uid) has not issued one"
        )
    if answer.outcome != KeyOutcome.DONE:
        raise _refusal("look up the billing key of", customer_uid, answer)
    now = app.clocks.billing.now()
    with app.transaction() as session:
        record_event(
            session,
            BillingKeyVerified(
                customer_uid=customer_uid,
                card_name=answer.card_name,
                card_number=answer.card_number,
            ),
            now,
        )
        remember_card(session, customer_uid, answer.card_name, answer.card_number, now)
        retried = [row.id for row in card_updated(session, customer_uid, now)]
    result = KeyResult(customer_uid, "verified", answer.card_name, answer.card_number)
    return VerifiedKey(result, retried)


def remember_card(
    session: Session,
    customer_uid: str,
    card_name: str | None,
    masked: str | None,
    now: datetime,
) -> None:
    """What PortOne showed of the customer's key (the masked number only)."""
    customer = get_customer(session, customer_uid)
    card = session.get(CustomerCard, customer.id, with_for_update=True)
    if card is None:
        card = CustomerCard(customer_id=customer.id, verified_at=now)
        session.add(card)
    card.card_name, card.card_number = card_name, mask_number(masked) if masked else None
    card.verified_at, card.deleted_at = now, None


def forget_card(session: Session, customer_uid: str, now: datetime) -> None:
    card = session.get(CustomerCard, get_customer(session, customer_uid).id, with_for_update=True)
    if card is not None:
        card.deleted_at = now


def card_of(session: Session, customer: Customer) -> CustomerCard | None:
    return session.get(CustomerCard, customer.id)


def _confirm_deleted(client: PortOneClient, customer_uid: str, unseen: KeyAnswer) -> KeyAnswer:
    """The delete's answer was not seen: a lookup that finds no key means it is deleted."""
    found = keys.classify_key(keys.find(client, customer_uid), customer_uid, None)
    if found.outcome == KeyOutcome.ABSENT:
        return KeyAnswer(KeyOutcome.DONE, http_status=unseen.http_status)
    if found.outcome == KeyOutcome.DONE:
        return KeyAnswer(KeyOutcome.NOT_SENT, f"{unseen.message}; the key is still there")
    return unseen


def _holder(customer: Customer) -> Holder:
    return Holder(name=customer.name, email=customer.email, tel=customer.phone)


def _live_subscriptions(session: Session, customer: Customer) -> int:
    query = select(func.count(Subscription.id)).where(
        Subscription.customer_id == customer.id,
        Subscription.status.in_(LIVE),
        Subscription.cancel_at_period_end.is_(False),
    )
    return int(session.scalar(query) or 0)


def _refusal(what: str, customer_uid: str, answer: KeyAnswer) -> BillingError:
    where = f"{what} {customer_uid!r}"
    if answer.outcome == KeyOutcome.ABSENT:
        return NotFound(f"PortOne has no billing key for {customer_uid!r}: {answer.message}")
    if answer.outcome == KeyOutcome.REFUSED:
        return GatewayRefused(f"PortOne refused to {where}: {answer.message}")
    if answer.outcome == KeyOutcome.NOT_SENT:
        return GatewayRefused(f"could not {where} ({answer.message}): nothing changed, try again")
    return GatewayRefused(
        f"PortOne's answer was not seen ({answer.message}) when asked to {where}: it may or "
        "may not have happened; run the command again"
    )


def _log(action: str, customer_uid: str, answer: KeyAnswer) -> None:
    log(
        logger,
        action,
        customer_uid=customer_uid,
        outcome=str(answer.outcome),
        http_status=answer.http_status,
        code=answer.code,
        message=answer.message,
    )


def today_in(zone: ZoneInfo, wall: datetime) -> date:
    """The date in ``zone`` at ``wall`` (the system clock): expiry is checked against the
    real calendar, as PortOne does, not against the (possibly simulated) billing clock."""
    return wall.astimezone(zone).date()
