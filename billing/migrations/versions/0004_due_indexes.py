"""Indexes for the hot path: due work in claim order, and renewals not yet reminded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DUE = "next_charge_at IS NOT NULL"
UNREMINDED = "next_charge_at IS NOT NULL AND reminded_period_no < period_no"


def upgrade() -> None:
    op.drop_index("ix_subscriptions_due", table_name="subscriptions")
    op.create_index(
        "ix_subscriptions_due",
        "subscriptions",
        ["next_charge_at", "id"],
        postgresql_where=sa.text(DUE),
        sqlite_where=sa.text(DUE),
    )
    op.create_index(
        "ix_subscriptions_unreminded",
        "subscriptions",
        ["next_charge_at"],
        postgresql_where=sa.text(UNREMINDED),
        sqlite_where=sa.text(UNREMINDED),
    )


def downgrade() -> None:
    op.drop_index("ix_subscriptions_unreminded", table_name="subscriptions")
    op.drop_index("ix_subscriptions_due", table_name="subscriptions")
    op.create_index(
        "ix_subscriptions_due",
        "subscriptions",
        ["next_charge_at"],
        postgresql_where=sa.text(DUE),
        sqlite_where=sa.text(DUE),
    )
