"""What commands print: JSON-ready dicts, times as ISO 8601 with the plan's offset."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from billing.db.tables import Subscription
from billing.domain.calendar import Period, period_amount
from billing.domain.plans import Plan
from billing.domain.times import format_time


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
