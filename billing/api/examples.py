"""Example answers shown in the OpenAPI document (``/v1/docs``): one monthly subscription of
9,900 KRW started on 2027-01-31 00:30 in Seoul, its first charge paid, 4,000 KRW refunded.

They are written by hand for a reader, and held to the real thing by
tests/integration/api/test_examples.py: each validates against its model, and has the same
fields, with values of the same JSON types, as the answer the served API gives for the same
story.
"""

from __future__ import annotations

from typing import Any

SUBSCRIPTION: dict[str, Any] = {
    "id": 1,
    "customer_uid": "cust-1",
    "plan_id": "monthly",
    "plan_version": 1,
    "status": "active",
    "current_period_start": "2027-01-31T00:30:00+09:00",
    "current_period_end": "2027-02-28T00:30:00+09:00",
    "next_charge_at": "2027-02-28T00:30:00+09:00",
    "period_no": 2,
    "attempt": 1,
    "trial_end": None,
    "cancel_at_period_end": False,
    "next_plan_id": None,
    "started_at": "2027-01-31T00:30:00+09:00",
    "canceled_at": None,
    "paused_at": None,
    "created_at": "2027-01-31T00:30:00+09:00",
}

CHARGE: dict[str, Any] = {
    "id": 1,
    "subscription_id": 1,
    "merchant_uid": "sub-q3v8k2m9x4ta-1-1",
    "customer_uid": "cust-1",
    "plan_id": "monthly",
    "amount": 9900,
    "status": "paid",
    "period_no": 1,
    "attempt": 1,
    "period_start": "2027-01-31T00:30:00+09:00",
    "period_end": "2027-02-28T00:30:00+09:00",
    "imp_uid": "imp_123456789012",
    "receipt_url": "https://iniweb.inicis.com/receipt/imp_123456789012",
    "fail_reason": None,
    "decline_class": None,
    "sends": 1,
    "refunded_amount": 4000,
    "paid_at": "2027-01-31T00:30:00+09:00",
    "created_at": "2027-01-31T00:30:00+09:00",
}

REFUND: dict[str, Any] = {
    "id": 1,
    "charge_id": 1,
    "subscription_id": 1,
    "merchant_uid": "sub-q3v8k2m9x4ta-1-1",
    "imp_uid": "imp_123456789012",
    "amount": 4000,
    "checksum": 9900,
    "reason": "partial service",
    "status": "succeeded",
    "fail_reason": None,
    "sends": 1,
    "created_at": "2027-01-31T00:30:00+09:00",
    "charge_amount": 9900,
    "refunded_amount": 4000,
    "refundable": 5900,
}

CUSTOMER: dict[str, Any] = {
    "customer_uid": "cust-1",
    "name": "홍길동",
    "email": "c1@example.com",
    "phone": None,
    "created_at": "2027-01-31T00:30:00+09:00",
    "billing_key": {
        "card_name": "신한카드",
        "card_number": "************1111",
        "verified_at": "2027-01-31T00:30:00+09:00",
    },
}

PLAN: dict[str, Any] = {
    "id": "monthly",
    "version": 1,
    "name": "월간",
    "amount": 9900,
    "interval": "1 month",
    "cron": None,
    "timezone": "Asia/Seoul",
    "trial_days": 0,
    "prorate_first": None,
    "card_quota": None,
    "dunning": {"retry_after": [86400, 172800], "final_action": "cancel"},
}

EVENT: dict[str, Any] = {
    "id": 3,
    "at": "2027-01-31T00:30:00+09:00",
    "kind": "charge_paid",
    "charge_id": 1,
    "data": {
        "merchant_uid": "sub-q3v8k2m9x4ta-1-1",
        "amount": 9900,
        "imp_uid": "imp_123456789012",
        "period_no": 1,
        "attempt": 1,
    },
}

ERROR: dict[str, Any] = {"error": {"code": "not_found", "message": "no subscription with id 42"}}


# OpenAPI schema name (the model's class name in billing.api.models) -> its example answers
DOCUMENTED: dict[str, list[dict[str, Any]]] = {
    "Subscription": [SUBSCRIPTION],
    "Charge": [CHARGE],
    "Refund": [REFUND],
    "Customer": [CUSTOMER],
    "Plan": [PLAN],
    "Event": [EVENT],
    "ErrorBody": [ERROR],
}


def add_examples(document: dict[str, Any]) -> dict[str, Any]:
    """The examples, nulls included, in an OpenAPI document FastAPI generated.

    They are added after generation because FastAPI drops every null from the document it
    builds (``exclude_none``), examples included: an example would then lack the fields a
    real answer carries as null (``canceled_at``, ``trial_end``...), and a reader would take
    them for absent."""
    schemas = document.get("components", {}).get("schemas", {})
    for name, answers in DOCUMENTED.items():
        if name in schemas:
            schemas[name]["examples"] = answers
    return document
