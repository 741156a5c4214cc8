"""One subscription's story on one page: its events, charges (with PortOne's latest answer),
refunds and notices, merged newest first. Read only.

Event data is shown as it was recorded, after the log redactor has passed over it: the
history never holds a card number or a secret, and this makes sure no page shows one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.db.tables import Charge, Event, Notice, Refund
from billing.logs import redact

EVENTS_SHOWN = 1000
ROWS_SHOWN = 1000  # charges, refunds, notices
VALUE_SHOWN = 300  # characters of one event field
ANSWERS = ("gateway_answer", "reconciled")
ISO_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")


@dataclass(frozen=True)
class EventItem:
    entry: ClassVar[str] = "event"
    at: datetime
    id: int
    kind: str
    charge_id: int | None
    actor: str | None
    details: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ChargeItem:
    entry: ClassVar[str] = "charge"
    at: datetime
    id: int
    merchant_uid: str
    imp_uid: str | None
    amount: int
    status: str
    period_no: int
    attempt: int
    period_start: datetime
    period_end: datetime
    fail_reason: str | None
    decline_class: str | None
    refunded_amount: int
    duplicate_of: int | None
    answer: str | None  # PortOne's latest answer, or what a lookup found

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded_amount if self.status == "paid" else 0


@dataclass(frozen=True)
class RefundItem:
    entry: ClassVar[str] = "refund"
    at: datetime
    id: int
    charge_id: int
    amount: int
    status: str
    reason: str
    fail_reason: str | None


@dataclass(frozen=True)
class NoticeItem:
    entry: ClassVar[str] = "notice"
    at: datetime
    id: int
    kind: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    event_id: str


Item = EventItem | ChargeItem | RefundItem | NoticeItem
RANK = {"charge": 0, "refund": 1, "notice": 2}  # at one moment, newest first
Origins = dict[tuple[str, int | str], int]  # (entry, id) -> the first event that names it


@dataclass(frozen=True)
class Timeline:
    items: list[Item]
    events_total: int

    @property
    def events_left_out(self) -> int:
        shown = sum(1 for item in self.items if isinstance(item, EventItem))
        return self.events_total - shown


def subscription_timeline(
    session: Session, subscription_id: int, zone: ZoneInfo, events_shown: int = EVENTS_SHOWN
) -> Timeline:
    """``zone``: the plan's, for the times inside events' data."""
    events, origins = _events(session, subscription_id, zone, events_shown)
    charges = _charges(session, subscription_id)
    items: list[Item] = [*events, *charges, *_refunds(session, [c.id for c in charges])]
    items += _notices(session, subscription_id)
    items.sort(key=lambda item: _position(item, origins), reverse=True)
    total = session.scalar(
        select(func.count()).select_from(Event).where(Event.subscription_id == subscription_id)
    )
    return Timeline(items, int(total or 0))


def _position(item: Item, origins: Origins) -> tuple[datetime, float, int, int]:
    """Newest first; at one moment (the test clock stands still), a charge, refund or notice
    sits just below the event that created it, else below that moment's events."""
    if isinstance(item, EventItem):
        return (item.at, item.id, 0, 0)
    key: tuple[str, int | str] = (
        ("notice", item.event_id) if isinstance(item, NoticeItem) else (item.entry, item.id)
    )
    return (item.at, origins.get(key, 0) - 0.5, RANK[item.entry], item.id)


def _events(
    session: Session, subscription_id: int, zone: ZoneInfo, limit: int
) -> tuple[list[EventItem], Origins]:
    """The newest events, and the first event that names each charge, refund and notice."""
    query = (
        select(Event)
        .where(Event.subscription_id == subscription_id)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    items, origins = [], {}
    for e in session.scalars(query):
        items.append(
            EventItem(
                e.occurred_at, e.id, e.kind, e.charge_id, _actor(e.data), details(e.data, zone)
            )
        )
        for key in _named(e):
            origins[key] = e.id  # ids descending: the first event wins
    return items, origins


def _named(event: Event) -> list[tuple[str, int | str]]:
    named: list[tuple[str, int | str]] = []
    if event.charge_id is not None:
        named.append(("charge", event.charge_id))
    if isinstance(event.data.get("refund_id"), int):
        named.append(("refund", event.data["refund_id"]))
    if event.kind == "notice_queued":
        named += [("notice", str(eid)) for eid in event.data.get("event_ids") or []]
    return named


def _charges(session: Session, subscription_id: int) -> list[ChargeItem]:
    answers = _answers(session, subscription_id)
    query = (
        select(Charge)
        .where(Charge.subscription_id == subscription_id)
        .order_by(Charge.id.desc())
        .limit(ROWS_SHOWN)
    )
    return [
        ChargeItem(
            c.created_at,
            c.id,
            c.merchant_uid,
            c.imp_uid,
            c.amount,
            c.status,
            c.period_no,
            c.attempt,
            c.period_start,
            c.period_end,
            c.fail_reason,
            c.decline_class,
            c.refunded_amount,
            c.duplicate_of,
            answers.get(c.id),
        )
        for c in session.scalars(query)
    ]


def _answers(session: Session, subscription_id: int) -> dict[int, str]:
    """Each charge's latest answer from PortOne: to a send, or to a lookup."""
    query = (
        select(Event.charge_id, Event.kind, Event.data)
        .where(Event.subscription_id == subscription_id, Event.kind.in_(ANSWERS))
        .order_by(Event.id)
    )
    return {cid: answer_line(kind, data) for cid, kind, data in session.execute(query) if cid}


def answer_line(kind: str, data: Mapping[str, Any]) -> str:
    """``approved (HTTP 200, code 0)`` or ``looked up: paid -> paid``, with the reason."""
    if kind == "gateway_answer":
        head = f"{data.get('outcome')} (HTTP {data.get('http_status')}, code {data.get('code')})"
    else:
        taken = data.get("step", data.get("verdict"))  # rows before the charge machine: verdict
        head = f"looked up: {data.get('found')} -> {taken}"
    reason = data.get("reason")
    return redact(f"{head}: {reason}" if reason else head)


def _refunds(session: Session, charge_ids: list[int]) -> list[RefundItem]:
    query = select(Refund).where(Refund.charge_id.in_(charge_ids)).order_by(Refund.id)
    return [
        RefundItem(r.created_at, r.id, r.charge_id, r.amount, r.status, r.reason, r.fail_reason)
        for r in session.scalars(query.limit(ROWS_SHOWN))
    ]


def _notices(session: Session, subscription_id: int) -> list[NoticeItem]:
    query = select(Notice).where(Notice.subscription_id == subscription_id)
    return [
        NoticeItem(
            n.created_at,
            n.id,
            n.kind,
            n.channel,
            n.status,
            n.attempts,
            n.last_error and redact(n.last_error),
            n.event_id,
        )
        for n in session.scalars(query.order_by(Notice.id.desc()).limit(ROWS_SHOWN))
    ]


def _actor(data: Mapping[str, Any]) -> str | None:
    actor = data.get("actor")
    return str(actor) if actor is not None else None


def details(data: Mapping[str, Any], zone: ZoneInfo) -> tuple[tuple[str, str], ...]:
    """The event's fields but its actor and empty ones, as (name, text) pairs, redacted and
    clipped; a time is shown in ``zone``."""
    return tuple(
        (str(key), _text(value, zone))
        for key, value in data.items()
        if key != "actor" and value is not None and value != ""
    )


def _text(value: Any, zone: ZoneInfo) -> str:
    if isinstance(value, str):
        shown = _in_zone(value, zone)
    else:
        shown = json.dumps(value, ensure_ascii=False)
    shown = redact(shown)
    return shown if len(shown) <= VALUE_SHOWN else shown[: VALUE_SHOWN - 1] + "…"


def _in_zone(text: str, zone: ZoneInfo) -> str:
    """An ISO 8601 time with an offset, moved to ``zone``; any other text as it is."""
    if not ISO_TIME.match(text):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    return moment.astimezone(zone).isoformat(timespec="seconds").replace("T", " ")
