"""Customers taken over from PortOne's hosted scheduler (``billing import portone-schedules``):
held until PortOne's schedules are revoked and read back, then released (SPEC 10).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedule_takeovers",
        sa.Column("customer_uid", sa.String(length=80), nullable=False),
        sa.Column("subscription_id", ID, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("held", sa.JSON(), nullable=False),
        sa.Column("held_at", TIME, nullable=False),
        sa.Column("released_at", TIME, nullable=True),
        sa.Column("first_charge_at", TIME, nullable=True),
        sa.CheckConstraint(
            "state IN ('held', 'released')", name=op.f("ck_schedule_takeovers_state")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_schedule_takeovers_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("customer_uid", name=op.f("pk_schedule_takeovers")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_schedule_takeovers_subscription_id")),
    )


def downgrade() -> None:
    op.drop_table("schedule_takeovers")
