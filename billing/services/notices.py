"""Notices through a transactional outbox.

A notice is written in the same transaction as the state change it tells of, one row per
channel of the catalog's ``notify:`` list. The scheduler publishes due rows; the worker sends
them (``billing.services.delivery``). Reminders (upcoming renewal, end of trial) are written
by the scheduler a configurable time ahead, once per period.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import CatalogLoad, Charge, Customer, Notice, Subscription
from billing.domain.events import NoticeQueued
from billing.domain.notices import NoticeKind
from billing.domain.plans import NotifyChannel, Reminders
from billing.domain.statuses import SubscriptionStatus
from billing.domain.times import localize
from billing.errors import NotFound
from billing.services.history import record_event


@dataclass(frozen=True)
class NoticeSettings:
    channels: tuple[NotifyChannel, ...]
    reminders: Reminders


DEFAULT_SETTINGS = NoticeSettings((NotifyChannel("log"),), Reminders())


def settings_from_load(load: CatalogLoad | None) -> NoticeSettings:
    if load is None:
        return DEFAULT_SETTINGS
    stored: Any = load.notify
    channels = stored.get("channels", []) if isinstance(stored, dict) else stored
    leads = stored.get("reminders", {}) if isinstance(stored, dict) else {}
    return NoticeSettings(
        tuple(
            NotifyChannel(
                c["type"], tuple(sorted((k, str(v)) for k, v in c.items() if k != "type"))
            )
            for c in channels
        ),
        Reminders(
            timedelta(seconds=leads.get("upcoming_renewal", 3 * 86400)),
            timedelta(seconds=leads.get("trial_will_end", 3 * 86400)),
        ),
    )


class NoticeConfig:
    """The latest catalog load's channels and reminder leads, re-read every few seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, NoticeSettings] | None = None

    def get(self, session: Session) -> NoticeSettings:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
        load = session.scalar(select(CatalogLoad).order_by(CatalogLoad.id.desc()).limit(1))
        settings = settings_from_load(load)
        with self._lock:
            self._cached = (time.monotonic(), settings)
        return settings


def queue_notice(
    session: Session,
    settings: NoticeSettings,
    kind: NoticeKind,
    subscription: Subscription,
    now: datetime,
    wall: datetime,
    *,
    charge: Charge | None = None,
    dedupe: str | None = None,
    **details: Any,
) -> list[Notice]:
    """Write one notice per channel in the caller's transaction; returns the rows."""
    customer = session.get(Customer, subscription.customer_id)
    assert customer is not None
    rows = []
    zone = _zone(session, subscription) if settings.channels else UTC_ZONE
    for index, channel in enumerate(settings.channels):
        if channel.type == "email" and not customer.email:
            continue  # nowhere to send it
        event_id = f"evt_{secrets.token_hex(12)}"
        body = localize(
            _payload(event_id, kind, subscription, customer, charge, now, details), zone
        )
        unique = dedupe or event_id
        rows.append(
            Notice(
                event_id=event_id,
                dedupe_key=f"{kind}:{unique}:{index}",
                kind=str(kind),
                subscription_id=subscription.id,
                charge_id=charge.id if charge else None,
                channel=channel.type,
                channel_config=dict(channel.settings),
                recipient=customer.email if channel.type == "email" else None,
                payload=body,
                status="pending",
                attempts=0,
                next_attempt_at=wall,
                created_at=now,
                updated_at=wall,
            )
        )
    session.add_all(rows)
    session.flush()
    record_event(
        session,
        NoticeQueued(
            notice=str(kind),
            channels=tuple(row.channel for row in rows),
            event_ids=tuple(row.event_id for row in rows),
        ),
        now,
        subscription_id=subscription.id,
        charge_id=charge.id if charge else None,
    )
    return rows


def _payload(
    event_id: str,
    kind: NoticeKind,
    sub: Subscription,
    customer: Customer,
    charge: Charge | None,
    now: datetime,
    details: dict[str, Any],
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "subscription": {
            "id": sub.id,
            "customer_uid": customer.customer_uid,
            "plan_id": sub.plan_id,
            "status": sub.status,
            "current_period_end": _iso(sub.current_period_end),
            "next_charge_at": _iso(sub.next_charge_at),
        },
        **details,
    }
    if charge is not None:
        data["charge"] = {
            "id": charge.id,
            "merchant_uid": charge.merchant_uid,
            "amount": charge.amount,
            "status": charge.status,
            "attempt": charge.attempt,
            "fail_reason": charge.fail_reason,
            "decline_class": charge.decline_class,
            "receipt_url": charge.receipt_url,
        }
    return {"id": event_id, "type": str(kind), "created_at": now.isoformat(), "data": data}


UTC_ZONE = ZoneInfo("UTC")


def _zone(session: Session, subscription: Subscription) -> ZoneInfo:
    """The plan's zone: the times of a notice are read by people."""
    from billing.services.plan_store import plan_version

    try:
        return plan_version(session, subscription.plan_id, subscription.plan_version).zone
    except NotFound:
        return UTC_ZONE


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def queue_reminders(
    session: Session, settings: NoticeSettings, now: datetime, wall: datetime, limit: int
) -> int:
    """Upcoming renewals and trial ends within their lead time, once per period."""
    leads = settings.reminders
    horizon = max(leads.upcoming_renewal, leads.trial_will_end)
    if horizon <= timedelta(0):
        return 0
    query = (
        select(Subscription)
        .where(
            Subscription.next_charge_at > now,
            Subscription.next_charge_at <= now + horizon,
            Subscription.status.in_([SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING]),
            Subscription.reminded_period_no < Subscription.period_no,
            Subscription.attempt == 1,
        )
        .order_by(Subscription.next_charge_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    queued = 0
    for sub in session.scalars(query):
        kind, lead = _reminder(sub, leads)
        assert sub.next_charge_at is not None
        if kind is None:
            sub.reminded_period_no = sub.period_no  # a first charge is no renewal
            continue
        if sub.next_charge_at > now + lead:
            continue
        dedupe = f"{sub.id}:{sub.period_no}"
        queue_notice(
            session,
            settings,
            kind,
            sub,
            now,
            wall,
            dedupe=dedupe,
            charge_at=_iso(sub.next_charge_at),
        )
        sub.reminded_period_no = sub.period_no
        queued += 1
    return queued


def _reminder(sub: Subscription, leads: Reminders) -> tuple[NoticeKind | None, timedelta]:
    if sub.status == SubscriptionStatus.TRIALING:
        if leads.trial_will_end > timedelta(0):
            return NoticeKind.TRIAL_WILL_END, leads.trial_will_end
        return None, timedelta(0)
    if sub.period_no > 1 and leads.upcoming_renewal > timedelta(0):
        return NoticeKind.UPCOMING_RENEWAL, leads.upcoming_renewal
    return None, timedelta(0)
