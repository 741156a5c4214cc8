"""What commands print: JSON-ready dicts, times as ISO 8601 with the plan's offset."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from billing.db.api_tables import ApiKey, CustomerCard
from billing.db.tables import Charge, Customer, Event, Refund, Subscription
from billing.domain.calendar import period_amount
from billing.domain.plans import Plan
from billing.domain.state import Period
from billing.domain.times import format_time, localize
from billing.services.plan_store import plan_version
from billing.services.subscriptions import customer_uid_of


def plan_view(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "version": plan.version,
        "name": plan.name,
        "amount": plan.amount,
        "interval": str(plan.interval) if plan.interval else None,
        "cron": plan.cron,
        "timezone": plan.zone.key,
        "trial_days": plan.trial_days,
        "prorate_first": plan.prorate_first if plan.cron else None,
        "card_quota": plan.card_quota,
        "dunning": {
            "retry_after": [int(o.total_seconds()) for o in plan.dunning.retry_after],
            "final_action": str(plan.dunning.final_action),
        },
    }


def preview_view(plan: Plan, periods: list[Period]) -> list[dict[str, Any]]:
    return [
        {"at": format_time(period.start, plan.zone), "amount": period_amount(plan, period)}
        for period in periods
    ]


def subscription_view(row: Subscription, customer_uid: str, zone: ZoneInfo) -> dict[str, Any]:
    def time(value: Any) -> str | None:
        return format_time(value, zone)

    return {
        "id": row.id,
        "customer_uid": customer_uid,
        "plan_id": row.plan_id,
        "plan_version": row.plan_version,
        "status": row.status,
        "current_period_start": time(row.current_period_start),
        "current_period_end": time(row.current_period_end),
        "next_charge_at": time(row.next_charge_at),
        "period_no": row.period_no,
        "attempt": row.attempt,
        "trial_end": time(row.trial_end),
        "cancel_at_period_end": row.cancel_at_period_end,
        "next_plan_id": row.next_plan_id,
        "started_at": time(row.started_at),
        "canceled_at": time(row.canceled_at),
        "paused_at": time(row.paused_at),
        "created_at": time(row.created_at),
    }


def charge_view(charge: Charge, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": charge.id,
        "subscription_id": charge.subscription_id,
        "merchant_uid": charge.merchant_uid,
        "customer_uid": charge.customer_uid,
        "plan_id": charge.plan_id,
        "amount": charge.amount,
        "status": charge.status,
        "period_no": charge.period_no,
        "attempt": charge.attempt,
        "period_start": format_time(charge.period_start, zone),
        "period_end": format_time(charge.period_end, zone),
        "imp_uid": charge.imp_uid,
        "receipt_url": charge.receipt_url,
        "fail_reason": charge.fail_reason,
        "decline_class": charge.decline_class,
        "sends": charge.sends,
        "refunded_amount": charge.refunded_amount,
        "paid_at": format_time(charge.paid_at, zone),
        "created_at": format_time(charge.created_at, zone),
    }


def refund_view(row: Refund, charge: Charge, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": row.id,
        "charge_id": row.charge_id,
        "subscription_id": charge.subscription_id,
        "merchant_uid": charge.merchant_uid,
        "imp_uid": charge.imp_uid,
        "amount": row.amount,
        "checksum": row.checksum,
        "reason": row.reason,
        "status": row.status,
        "fail_reason": row.fail_reason,
        "sends": row.sends,
        "created_at": format_time(row.created_at, zone),
        "charge_amount": charge.amount,
        "refunded_amount": charge.refunded_amount,
        "refundable": charge.amount - charge.refunded_amount,
    }


def event_view(event: Event, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": format_time(event.occurred_at, zone),
        "kind": event.kind,
        "charge_id": event.charge_id,
        "data": localize(event.data, zone),
    }


def customer_view(customer: Customer, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "customer_uid": customer.customer_uid,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "created_at": format_time(customer.created_at, zone),
    }


def card_view(card: CustomerCard | None, zone: ZoneInfo) -> dict[str, Any] | None:
    """The billing key PortOne last showed us (masked), or None when none is known."""
    if card is None or card.deleted_at is not None:
        return None
    return {
        "card_name": card.card_name,
        "card_number": card.card_number,
        "verified_at": format_time(card.verified_at, zone),
    }


def api_key_view(row: ApiKey, zone: ZoneInfo) -> dict[str, Any]:
    """An API key as listed: never the key, only the prefix that tells keys apart."""
    return {
        "name": row.name,
        "prefix": row.prefix,
        "read_only": row.read_only,
        "created_at": format_time(row.created_at, zone),
        "last_used_at": format_time(row.last_used_at, zone),
        "revoked_at": format_time(row.revoked_at, zone),
    }


# -- views that read the rows they need ----------------------------------------------------------


def show_subscription(session: Session, row: Subscription) -> dict[str, Any]:
    """The subscription as `subscriptions show --json` prints it (times in its plan's zone)."""
    return subscription_view(row, customer_uid_of(session, row), subscription_zone(session, row))


def subscription_zone(session: Session, row: Subscription) -> ZoneInfo:
    return plan_version(session, row.plan_id, row.plan_version).zone


def show_refund(session: Session, row: Refund, zone: ZoneInfo) -> dict[str, Any]:
    charge = session.get(Charge, row.charge_id)
    assert charge is not None
    return refund_view(row, charge, zone)
