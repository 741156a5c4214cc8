"""PortOne's webhooks (notice_url): trusted only after asking PortOne about the payment.

A V1 webhook is unsigned: ``{imp_uid, merchant_uid, status}`` from anyone. Nothing in it is
believed. The payment is re-fetched with ``GET /payments/{imp_uid}``; the webhook must name
the same merchant_uid PortOne holds, the merchant_uid must be one of our charges, and the
amount PortOne holds must be the charge's. Only then does a charge whose payment PortOne
holds as paid become paid here, whatever its state, exactly as a lookup finding it paid would
(``domain.charges.after_lookup``, the charge row locked). A charge already paid is left alone,
so a redelivered webhook changes nothing; anything else is kept in the event log for people
and the scheduler's reconciliation. When PortOne cannot be asked, nothing is decided here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.tables import Charge, Event
from billing.domain.answers import Found, Lookup
from billing.domain.charges import ChargeStatus, Timing, after_lookup
from billing.domain.events import EventKind, PortoneNotice
from billing.errors import InvalidInput
from billing.logs import log
from billing.portone.answers import Exchange, same_amount
from billing.services.catalog_cache import CatalogCache
from billing.services.history import record_event
from billing.services.settlement import charge_state, store_step
from billing.services.webhook_guard import WebhookGuard, WebhookLimits

logger = logging.getLogger("billing.webhook")

IMP_UID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_MERCHANT_UID = 100  # ours are at most 40; other payments of the account may differ
MAX_STATUS = 32
UNKNOWN_PAYMENT = "PortOne knows no payment with this imp_uid"


class PaymentSource(Protocol):
    """The one PortOne call a webhook needs (``PortOneClient.payment``)."""

    def payment(self, imp_uid: str, *, include_sandbox: bool = False) -> Exchange: ...


@dataclass(frozen=True)
class PortoneWebhook:
    """What the webhook claims. Never trusted: only ``imp_uid`` is used, to ask PortOne."""

    imp_uid: str
    merchant_uid: str
    status: str | None = None


@dataclass(frozen=True)
class Payment:
    """What PortOne holds for the webhook's imp_uid."""

    imp_uid: str
    merchant_uid: str
    status: str
    amount: object


class Verdict(StrEnum):
    SETTLED = "settled"  # an unknown or processing charge became paid
    ALREADY_PAID = "already_paid"  # nothing to do (a redelivered webhook)
    RECORDED = "recorded"  # our charge, nothing to settle: kept in the event log
    MISMATCH = "mismatch"  # PortOne's payment names our merchant_uid with another amount
    NOT_OURS = "not_ours"  # a real payment, but no charge of ours has its merchant_uid
    FORGED = "forged"  # PortOne knows no such payment, or it contradicts the webhook
    DEFERRED = "deferred"  # PortOne could not be asked: reconciliation decides later
    THROTTLED = "throttled"  # too many webhooks: answered 429, PortOne sends it again
    ERROR = "error"  # our side failed (the database): PortOne should send it again


@dataclass(frozen=True)
class WebhookResult:
    verdict: Verdict
    reason: str = ""
    charge_id: int | None = None


def parse_webhook(fields: Mapping[str, Any]) -> PortoneWebhook:
    """The webhook from a JSON object or form fields; InvalidInput names the bad field."""
    imp_uid = _text(fields, "imp_uid", 64)
    if not IMP_UID.match(imp_uid):
        raise InvalidInput("imp_uid: expected letters, digits, '_' or '-'")
    merchant_uid = _text(fields, "merchant_uid", MAX_MERCHANT_UID)
    status = fields.get("status")
    if status is not None and not (isinstance(status, str) and len(status) <= MAX_STATUS):
        raise InvalidInput(f"status: expected text of at most {MAX_STATUS} characters")
    return PortoneWebhook(imp_uid, merchant_uid, status or None)


def _text(fields: Mapping[str, Any], name: str, limit: int) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(f"{name}: required, text of at most {limit} characters")
    return value


def read_payment(exchange: Exchange, webhook: PortoneWebhook) -> Payment | WebhookResult:
    """PortOne's answer to ``GET /payments/{imp_uid}``: the payment, or why there is none."""
    if exchange.failure is not None or exchange.status is None:
        return WebhookResult(Verdict.DEFERRED, f"PortOne did not answer: {exchange.detail}")
    document = _json(exchange.body)
    code = document.get("code") if isinstance(document, dict) else None
    if exchange.status == 404 and isinstance(code, int) and code != 0:
        return WebhookResult(Verdict.FORGED, UNKNOWN_PAYMENT)
    response = document.get("response") if isinstance(document, dict) else None
    if exchange.status != 200 or code != 0 or not isinstance(response, dict):
        return WebhookResult(Verdict.DEFERRED, f"PortOne answered HTTP {exchange.status}")
    payment = Payment(
        imp_uid=str(response.get("imp_uid")),
        merchant_uid=str(response.get("merchant_uid")),
        status=str(response.get("status")),
        amount=response.get("amount"),
    )
    if payment.imp_uid != webhook.imp_uid:
        return WebhookResult(Verdict.DEFERRED, "PortOne answered about another imp_uid")
    if payment.merchant_uid != webhook.merchant_uid:
        return WebhookResult(Verdict.FORGED, "the notice names another merchant_uid than PortOne")
    return payment


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def apply_payment(
    session: Session, payment: Payment, now: datetime, wall: datetime, plans: CatalogCache
) -> WebhookResult:
    """Act on a payment PortOne confirmed, with our charge row locked (one transaction)."""
    query = select(Charge).where(Charge.merchant_uid == payment.merchant_uid).with_for_update()
    charge = session.scalar(query)
    if charge is None:
        return WebhookResult(Verdict.NOT_OURS, "no charge has this merchant_uid")
    if charge.status == ChargeStatus.PAID and charge.imp_uid == payment.imp_uid:
        return WebhookResult(Verdict.ALREADY_PAID, "", charge.id)
    result = _judge(charge, payment)
    if result.verdict != Verdict.SETTLED and _recorded_before(session, charge, payment):
        return result  # the same webhook again: one event per (imp_uid, status) is enough
    record_event(
        session,
        PortoneNotice(
            merchant_uid=charge.merchant_uid,
            imp_uid=payment.imp_uid,
            portone_status=payment.status,
            charge_status=str(charge.status),
            verdict=str(result.verdict),
            reason=result.reason,
        ),
        now,
        subscription_id=charge.subscription_id,
        charge_id=charge.id,
    )
    if result.verdict == Verdict.SETTLED:  # what a lookup finding it paid does, exactly
        step = after_lookup(
            charge_state(charge), Lookup(Found.PAID, payment.imp_uid), Timing(wall, timedelta(0))
        )
        store_step(session, charge, step, now, wall, plans)
    return result


def _recorded_before(session: Session, charge: Charge, payment: Payment) -> bool:
    query = select(Event.data).where(
        Event.subscription_id == charge.subscription_id,
        Event.charge_id == charge.id,
        Event.kind == EventKind.PORTONE_NOTICE,
    )
    return any(
        data.get("imp_uid") == payment.imp_uid and data.get("portone_status") == payment.status
        for data in session.scalars(query)
    )


def already_paid(session: Session, webhook: PortoneWebhook) -> int | None:
    """The id of our charge paid as the webhook says (nothing to ask PortOne), or None."""
    query = select(Charge.id).where(
        Charge.merchant_uid == webhook.merchant_uid,
        Charge.status == ChargeStatus.PAID,
        Charge.imp_uid == webhook.imp_uid,
    )
    return session.scalar(query)


def _judge(charge: Charge, payment: Payment) -> WebhookResult:
    if not same_amount(payment.amount, charge.amount):
        reason = f"PortOne holds {payment.amount!r} KRW, the charge is {charge.amount} KRW"
        return WebhookResult(Verdict.MISMATCH, reason, charge.id)
    if payment.status != "paid":
        return WebhookResult(Verdict.RECORDED, f"PortOne holds it {payment.status}", charge.id)
    if charge.status == ChargeStatus.PAID:
        reason = f"already paid here as {charge.imp_uid}, PortOne names {payment.imp_uid}"
        return WebhookResult(Verdict.RECORDED, reason, charge.id)
    return WebhookResult(Verdict.SETTLED, "", charge.id)


class WebhookHandler:
    """Re-fetch, then one short transaction: no connection is held while PortOne answers.

    Before the re-fetch, what costs PortOne nothing: an imp_uid PortOne did not know a moment
    ago is forged again; a charge already paid as the webhook says is ``already_paid``; past
    the guard's ceiling on re-fetches a webhook is ``throttled`` (answered 429)."""

    def __init__(
        self,
        app: App,
        portone: PaymentSource,
        plans: CatalogCache,
        *,
        include_sandbox: bool,
        guard: WebhookGuard | None = None,
    ) -> None:
        self.app = app
        self.guard = guard or WebhookGuard.from_limits(WebhookLimits())
        self.portone = portone
        self.plans = plans
        self.include_sandbox = include_sandbox

    def handle(self, webhook: PortoneWebhook) -> WebhookResult:
        result = self._without_portone(webhook) or self._with_portone(webhook)
        suspicious = result.verdict in (Verdict.FORGED, Verdict.MISMATCH)
        log(
            logger,
            "portone_notice",
            level=logging.WARNING if suspicious else logging.INFO,
            imp_uid=webhook.imp_uid,
            merchant_uid=webhook.merchant_uid,
            notice_status=webhook.status,
            verdict=str(result.verdict),
            reason=result.reason,
            charge_id=result.charge_id,
        )
        return result

    def _without_portone(self, webhook: PortoneWebhook) -> WebhookResult | None:
        if webhook.imp_uid in self.guard.unknown:
            return WebhookResult(Verdict.FORGED, UNKNOWN_PAYMENT + " (asked moments ago)")
        with self.app.transaction() as session:
            charge_id = already_paid(session, webhook)
        if charge_id is not None:
            return WebhookResult(Verdict.ALREADY_PAID, "", charge_id)
        if not self.guard.refetches.take():
            return WebhookResult(Verdict.THROTTLED, "too many notices to verify: send it again")
        return None

    def _with_portone(self, webhook: PortoneWebhook) -> WebhookResult:
        exchange = self.portone.payment(webhook.imp_uid, include_sandbox=self.include_sandbox)
        found = read_payment(exchange, webhook)
        if not isinstance(found, Payment):
            if found.reason == UNKNOWN_PAYMENT:
                self.guard.unknown.add(webhook.imp_uid)
            return found
        now = self.app.clocks.billing.now()  # before the transaction (see App.transaction)
        with self.app.transaction() as session:
            return apply_payment(session, found, now, self.app.clocks.system.now(), self.plans)
