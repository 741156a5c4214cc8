"""The schema: customers, versioned plans, subscriptions, charges and the event log.

The charge identity (SPEC 2.6) is enforced by the database, not only by code:
``UNIQUE (subscription_id, period_no, attempt)`` and ``UNIQUE (merchant_uid)``; at most one
paid charge per period and at most one open (pending, processing, unknown) charge per
subscription are partial unique indexes. The event log refuses UPDATE and DELETE (triggers
in the migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from billing.db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
MAX_ID = 2**63 - 1  # ids are PostgreSQL bigints: anything larger is no id of ours

SUBSCRIPTION_STATUSES = "'trialing', 'active', 'past_due', 'paused', 'canceled'"
CHARGE_STATUSES = "'pending', 'processing', 'paid', 'failed', 'unknown'"
OPEN_CHARGE = "status IN ('pending', 'processing', 'unknown')"
PAID_ONCE = "status = 'paid' AND duplicate_of IS NULL"  # a duplicate is recorded, not hidden
SET_ASIDE = "set_aside_at IS NOT NULL"
UNREMINDED = "next_charge_at IS NOT NULL AND reminded_period_no < period_no"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_uid: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanRow(Base):
    """A plan id and its current version; archived when removed from the catalog."""

    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    current_version: Mapped[int] = mapped_column(Integer)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanVersion(Base):
    """The terms of a plan from one catalog load on; a changed plan gets a new version."""

    __tablename__ = "plan_versions"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("(interval IS NULL) <> (cron IS NULL)", name="one_schedule"),
    )

    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    timezone: Mapped[str] = mapped_column(String(64))
    interval: Mapped[str | None] = mapped_column(String(32))
    cron: Mapped[str | None] = mapped_column(String(120))
    trial_days: Mapped[int] = mapped_column(Integer)
    prorate_first: Mapped[bool] = mapped_column(Boolean)
    card_quota: Mapped[int | None] = mapped_column(Integer)
    retry_after: Mapped[list[int]] = mapped_column(JSON)  # seconds from the first failure
    final_action: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CatalogLoad(Base):
    """Each accepted catalog load: where it came from and the catalog-wide settings."""

    __tablename__ = "catalog_loads"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64))
    notify: Mapped[dict[str, Any]] = mapped_column(JSON)  # channels and reminder leads
    plan_versions: Mapped[dict[str, int]] = mapped_column(JSON)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(Base):
    """A customer's subscription; ``next_charge_at`` is what the scheduler scans for."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({SUBSCRIPTION_STATUSES})", name="status"),
        CheckConstraint("period_no >= 1 AND attempt >= 1", name="counters"),
        ForeignKeyConstraint(
            ["plan_id", "plan_version"], ["plan_versions.plan_id", "plan_versions.version"]
        ),
        Index(  # what is due, in claim order: a range scan that stops at the batch size
            "ix_subscriptions_due",
            "next_charge_at",
            "id",
            postgresql_where=text("next_charge_at IS NOT NULL"),
            sqlite_where=text("next_charge_at IS NOT NULL"),
        ),
        Index(  # renewals whose reminder is still to be sent: leaves the index once sent
            "ix_subscriptions_unreminded",
            "next_charge_at",
            postgresql_where=text(UNREMINDED),
            sqlite_where=text(UNREMINDED),
        ),
        Index("ix_subscriptions_customer_id", "customer_id"),
        Index("ix_subscriptions_status", "status"),
        Index(
            "ix_subscriptions_set_aside",
            "set_aside_at",
            postgresql_where=text(SET_ASIDE),
            sqlite_where=text(SET_ASIDE),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(12), unique=True)  # merchant_uid prefix
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_version: Mapped[int] = mapped_column(Integer)  # terms of the current period
    next_plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_cycle: Mapped[int | None] = mapped_column(Integer)
    period_no: Mapped[int] = mapped_column(Integer)  # number of the due period
    due_period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    due_period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    due_cycle: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)  # attempt number of the next charge
    next_charge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    awaiting_new_card: Mapped[bool] = mapped_column(Boolean, default=False)  # hard decline
    reminded_period_no: Mapped[int] = mapped_column(Integer, default=0)  # reminder sent for
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # invariant 10: a row the scheduler could not handle waits here, out of the claim loop
    set_aside_reason: Mapped[str | None] = mapped_column(Text)
    set_aside_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock
    retry_at_once: Mapped[bool] = mapped_column(  # the card was updated while a charge flew
        Boolean, default=False, server_default=false()
    )
    look_before_send: Mapped[bool] = mapped_column(  # PortOne knew an attempt we did not
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Charge(Base):
    """One attempt to charge one period. Self-contained: the worker needs no other row.

    Business times (created_at, paid_at, the period) follow the billing clock, which is the
    test clock in sandbox mode; operational timers (updated_at, sent_at, resend_at,
    next_lookup_at) follow the system clock, because they measure how long PortOne or a
    worker has been silent.
    """

    __tablename__ = "charges"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_no", "attempt"),
        CheckConstraint(f"status IN ({CHARGE_STATUSES})", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refund"),
        CheckConstraint("period_no >= 1 AND attempt >= 1", name="counters"),
        Index(
            "uq_charges_paid_period",
            "subscription_id",
            "period_no",
            unique=True,
            postgresql_where=text(PAID_ONCE),
            sqlite_where=text(PAID_ONCE),
        ),
        Index(
            "uq_charges_open_per_subscription",
            "subscription_id",
            unique=True,
            postgresql_where=text(OPEN_CHARGE),
            sqlite_where=text(OPEN_CHARGE),
        ),
        Index(
            "ix_charges_open",
            "status",
            "updated_at",
            postgresql_where=text(OPEN_CHARGE),
            sqlite_where=text(OPEN_CHARGE),
        ),
        Index("ix_charges_customer_uid_created_at", "customer_uid", "created_at"),
        Index("ix_charges_subscription_id_id", "subscription_id", "id"),
        Index(  # the console's search by PortOne's imp_uid
            "ix_charges_imp_uid",
            "imp_uid",
            postgresql_where=text("imp_uid IS NOT NULL"),
            sqlite_where=text("imp_uid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    period_no: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    merchant_uid: Mapped[str] = mapped_column(String(40), unique=True)
    customer_uid: Mapped[str] = mapped_column(String(80))
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    card_quota: Mapped[int | None] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    imp_uid: Mapped[str | None] = mapped_column(String(64))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    decline_class: Mapped[str | None] = mapped_column(String(16))  # hard | soft (dunning)
    sends: Mapped[int] = mapped_column(Integer, default=0)  # requests sent to PortOne
    # system clock: a pending charge is not sent before resend_at; an unknown one is not
    # looked up (nor published for a lookup) before next_lookup_at, its lookup's lease
    resend_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_lookup_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # billing clock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # billing clock
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock, last send
    refusal: Mapped[str | None] = mapped_column(Text)  # PortOne refused; believed after a lookup
    lookups: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # so far
    looked_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock, answered
    receipt_url: Mapped[str | None] = mapped_column(Text)  # PortOne's card sales slip (매출전표)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("charges.id"))  # 2nd paid


REFUND_STATUSES = "'pending', 'processing', 'succeeded', 'failed', 'unknown'"
OPEN_REFUND = "status IN ('pending', 'processing', 'unknown')"


class Refund(Base):
    """A full or partial refund of a paid charge through ``POST /payments/cancel``.

    ``checksum`` is the refundable balance we believed in when the refund was asked for:
    PortOne refuses the cancel when its balance differs, so a re-sent refund can never
    refund twice. An outcome not seen is ``unknown`` and is reconciled like a charge.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(f"status IN ({REFUND_STATUSES})", name="status"),
        CheckConstraint("amount > 0 AND checksum >= amount", name="amount"),
        Index(
            "uq_refunds_open_per_charge",
            "charge_id",
            unique=True,
            postgresql_where=text(OPEN_REFUND),
            sqlite_where=text(OPEN_REFUND),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[int] = mapped_column(BigInteger)  # refundable balance before this refund
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # billing clock
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock


NOTICE_STATUSES = "'pending', 'sending', 'delivered', 'failed'"


class Notice(Base):
    """The outbox: one row per notice and channel, written with the state change it tells of.

    ``event_id`` is stable across redeliveries so that receivers can de-duplicate;
    ``dedupe_key`` stops the same notice (say, one period's upcoming renewal) from being
    written twice. Delivery is at least once: a row is ``sending`` under a lease while one
    worker sends it, and becomes ``delivered`` only once the receiver's success is committed;
    a sender that dies leaves an expired lease, and the row is sent again.
    """

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint(f"status IN ({NOTICE_STATUSES})", name="status"),
        Index(
            "ix_notices_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        Index("ix_notices_subscription_id_id", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"))
    channel: Mapped[str] = mapped_column(String(16))  # log | webhook | email
    channel_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipient: Mapped[str | None] = mapped_column(String(254))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # billing clock
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock


class JobRun(Base):
    """A job run at most once a period by whichever scheduler claims it first (the daily
    ledger reconciliation), with the summary of its last run for people to read."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TestClock(Base):
    """The shared test clock of sandbox mode (one row): every process reads "now" here."""

    __tablename__ = "test_clock"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    now: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """The append-only history: every state change, gateway exchange and notice."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subscription_id_id", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"))
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the billing clock
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the system clock


class ScheduleTakeover(Base):
    """A customer taken over from PortOne's hosted scheduler (``billing import
    portone-schedules``): ``held`` from the subscription's creation until PortOne's schedules
    are revoked and read back, then ``released`` (the subscription is charged here)."""

    __tablename__ = "schedule_takeovers"
    __table_args__ = (CheckConstraint("state IN ('held', 'released')", name="state"),)

    customer_uid: Mapped[str] = mapped_column(String(80), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    held: Mapped[list[str]] = mapped_column(JSON)  # merchant_uids waiting at PortOne when held
    held_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_charge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
