"""The PortOne V1 wire shapes: the ``{code, message, response}`` envelope, replies, and the
Payment and Customer objects exactly as the OpenAPI document lists their fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from billing.sandbox.customers import BillingKey
from billing.sandbox.ledger import CancelRecord, Payment, PaymentStatus
from billing.sandbox.schedules import Schedule

JSONObject = dict[str, object]

PG_PROVIDER = "kcp_billing"
PG_ID = "IMP_SANDBOX"
RECEIPT_BASE = "https://receipt.sandbox.invalid"
UNAUTHORIZED = "Unauthorized"


class Delivery(Enum):
    """How a reply reaches the client: answered, held until timeout, or reset (RST)."""

    ANSWER = "answer"
    HANG = "hang"
    RESET = "reset"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status and JSON body, and how to deliver it."""

    status: int
    body: JSONObject
    delivery: Delivery = Delivery.ANSWER
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Request:
    """One routed request: path parameters, query (last value of each name), decoded body
    fields, the bearer token, and every value of each query name (``imp_uid[]=a&imp_uid[]=b``)."""

    params: dict[str, str]
    query: dict[str, str]
    fields: dict[str, object]
    token: str | None = None
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)


class InvalidRequest(Exception):
    """A request the sandbox answers with HTTP 400 code -1; the message names field and why."""


def ok(response: object) -> Reply:
    return Reply(200, {"code": 0, "message": None, "response": response})


def refusal(message: str, status: int = 200) -> Reply:
    """``code -1``: not processed; ``message`` says why."""
    return Reply(status, {"code": -1, "message": message, "response": None})


def unauthorized() -> Reply:
    return refusal(UNAUTHORIZED, 401)


def not_found(message: str) -> Reply:
    return refusal(message, 404)


def payment_json(payment: Payment) -> JSONObject:
    """A PortOne ``PaymentAnnotation`` (every field it lists, null where it does not apply)."""
    order, card, digits = payment.order, payment.card, payment.imp_uid[5:]
    paid = payment.status in (PaymentStatus.PAID, PaymentStatus.CANCELLED)  # approved once
    return {
        "imp_uid": payment.imp_uid,
        "merchant_uid": order.merchant_uid,
        "pay_method": "card",
        "channel": "api",
        "pg_provider": PG_PROVIDER,
        "emb_pg_provider": None,
        "pg_tid": f"sandbox{digits}",
        "pg_id": PG_ID,
        "sandbox": True,  # a test channel's payment or key (PortOne's "테스트 결제 여부")
        "escrow": False,
        "apply_num": digits[-8:] if paid else None,
        "bank_code": None,
        "bank_name": None,
        "card_code": card.code,
        "card_name": card.name,
        "card_issuer_code": card.code,
        "card_issuer_name": card.name,
        "card_publisher_code": None,
        "card_publisher_name": None,
        "card_quota": order.card_quota,
        "card_number": card.number,
        "card_type": card.card_type,
        "vbank_code": None,
        "vbank_name": None,
        "vbank_num": None,
        "vbank_holder": None,
        "vbank_date": 0,
        "vbank_issued_at": 0,
        "name": order.name,
        "amount": order.amount,
        "cancel_amount": payment.cancel_amount,
        "currency": "KRW",
        "buyer_name": order.buyer.name,
        "buyer_email": order.buyer.email,
        "buyer_tel": order.buyer.tel,
        "buyer_addr": order.buyer.addr,
        "buyer_postcode": order.buyer.postcode,
        "custom_data": order.custom_data,
        "user_agent": "sandbox",
        "status": payment.status.value,
        "started_at": payment.started_at,
        "paid_at": payment.paid_at,
        "failed_at": payment.failed_at,
        "cancelled_at": payment.cancelled_at,
        "fail_reason": payment.fail_reason,
        "cancel_reason": payment.cancel_history[-1].reason if payment.cancel_history else None,
        "receipt_url": f"{RECEIPT_BASE}/{payment.imp_uid}",
        "cancel_history": [_cancel_json(payment, record) for record in payment.cancel_history],
        "deposit_history": [],
        "cancel_receipt_urls": [_cancel_receipt(record) for record in payment.cancel_history],
        "cash_receipt_issued": False,
        "customer_uid": order.customer_uid or None,
        "customer_uid_usage": order.customer_uid_usage if order.customer_uid else None,
        "promotion": None,
    }


def _cancel_json(payment: Payment, record: CancelRecord) -> JSONObject:
    """A ``PaymentCancelAnnotation``."""
    return {
        "pg_tid": f"sandbox{payment.imp_uid[5:]}",
        "amount": record.amount,
        "cancelled_at": record.cancelled_at,
        "reason": record.reason,
        "cancellation_id": record.cancellation_id,
        "receipt_url": _cancel_receipt(record),
    }


def _cancel_receipt(record: CancelRecord) -> str:
    return f"{RECEIPT_BASE}/cancel/{record.cancellation_id}"


def customer_json(key: BillingKey) -> JSONObject:
    """A ``CustomerAnnotation``: the masked card and the contact, never the card number."""
    card, contact = key.card, key.contact
    return {
        "customer_uid": key.customer_uid,
        "pg_provider": PG_PROVIDER,
        "pg_id": PG_ID,
        "sandbox": True,  # a test channel's payment or key (PortOne's "테스트 결제 여부")
        "customer_id": None,
        "card_name": card.name,
        "card_code": card.code,
        "card_issuer_code": card.code,
        "card_issuer_name": card.name,
        "card_publisher_code": None,
        "card_publisher_name": None,
        "card_number": card.number,
        "card_type": card.card_type,
        "customer_name": contact.name,
        "customer_tel": contact.tel,
        "customer_email": contact.email,
        "customer_addr": contact.addr,
        "customer_postcode": contact.postcode,
        "inserted": key.inserted,
        "updated": key.updated,
    }


def page_json(payments: list[Payment], page: int, limit: int) -> JSONObject:
    """A ``PagedPaymentAnnotation``: one page of ``payments``; previous/next 0 when none."""
    start = (page - 1) * limit
    last_page = max(1, -(-len(payments) // limit))
    return {
        "total": len(payments),
        "previous": page - 1 if page > 1 else 0,
        "next": page + 1 if page < last_page else 0,
        "list": [payment_json(payment) for payment in payments[start : start + limit]],
    }


def schedule_json(schedule: Schedule, payment: Payment | None = None) -> JSONObject:
    """A ``ScheduleResultAnnotation``; ``payment``, the executed schedule's payment as the
    ledger holds it now (a refund since makes its payment_status ``cancelled``)."""
    order, buyer = schedule.order, schedule.order.buyer
    return {
        "customer_uid": order.customer_uid,
        "merchant_uid": order.merchant_uid,
        "imp_uid": schedule.imp_uid,
        "pg_provider": PG_PROVIDER,
        "pg_id": PG_ID,
        "customer_id": None,
        "schedule_at": schedule.schedule_at,
        "executed_at": schedule.executed_at,
        "revoked_at": schedule.revoked_at,
        "amount": order.amount,
        "currency": "KRW",
        "name": order.name or None,
        "buyer_name": buyer.name,
        "buyer_email": buyer.email,
        "buyer_tel": buyer.tel,
        "buyer_addr": buyer.addr,
        "buyer_postcode": buyer.postcode,
        "custom_data": order.custom_data,
        "schedule_status": schedule.status.value,
        "payment_status": payment.status.value if payment else schedule.payment_status,
        "fail_reason": schedule.fail_reason,
        "promotion_id": None,
    }
