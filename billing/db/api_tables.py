"""Tables of the merchant's HTTP API (``/v1``): API keys, idempotency records, and what we
know of each customer's billing key (the masked card PortOne showed us).

Kept apart from ``tables.py`` (the money path) but on the same ``Base``: ``billing.db``
imports this module, so ``Base.metadata`` always holds these tables too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.db.tables import Base, Id
from billing.db.types import UTCDateTime

LIVE_KEY = "revoked_at IS NULL"
IDEMPOTENCY_STATES = "'in_progress', 'done'"


class ApiKey(Base):
    """A key of the merchant's backend. Only the SHA-256 of the secret is kept; ``prefix``
    (the key's first characters, not secret) finds the row and names the key in lists."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(  # one live key per name; a revoked name may be used again
            "uq_api_keys_live_name",
            "name",
            unique=True,
            postgresql_where=text(LIVE_KEY),
            sqlite_where=text(LIVE_KEY),
        ),
        Index("ix_api_keys_prefix", "prefix"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    read_only: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # system clock


class IdempotencyRecord(Base):
    """One ``Idempotency-Key``: inserted before the request runs (the unique key decides
    which of two concurrent requests runs), then completed with the first answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint(f"state IN ({IDEMPOTENCY_STATES})", name="state"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock: lease
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # system clock: + 24 h


class CustomerCard(Base):
    """The billing key PortOne last showed us for a customer: card name and masked number
    (never more than the last four digits). ``deleted_at`` is set when the key is deleted."""

    __tablename__ = "customer_cards"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    card_name: Mapped[str | None] = mapped_column(String(64))
    card_number: Mapped[str | None] = mapped_column(String(32))  # masked
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)  # billing clock
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # billing clock
