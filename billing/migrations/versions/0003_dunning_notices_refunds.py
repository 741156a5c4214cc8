"""Dunning and notices: hard-decline and reminder state, the notice outbox, refunds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
OPEN_REFUND = "status IN ('pending', 'processing', 'unknown')"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(
            sa.Column("awaiting_new_card", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("reminded_period_no", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.alter_column("awaiting_new_card", server_default=None)
        batch.alter_column("reminded_period_no", server_default=None)
    op.create_index("ix_charges_customer_uid_created_at", "charges", ["customer_uid", "created_at"])
    op.create_index("ix_charges_subscription_id_id", "charges", ["subscription_id", "id"])
    _create_refunds()
    _create_notices()


def _create_refunds() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("charge_id", ID, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'succeeded', 'failed', 'unknown')",
            name=op.f("ck_refunds_status"),
        ),
        sa.CheckConstraint("amount > 0 AND checksum >= amount", name=op.f("ck_refunds_amount")),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_refunds_charge_id_charges")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index("ix_refunds_charge_id", "refunds", ["charge_id"])
    op.create_index(
        "uq_refunds_open_per_charge",
        "refunds",
        ["charge_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_REFUND),
        sqlite_where=sa.text(OPEN_REFUND),
    )


def _create_notices() -> None:
    op.create_table(
        "notices",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", ID, nullable=True),
        sa.Column("charge_id", ID, nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("channel_config", sa.JSON(), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed')",
            name=op.f("ck_notices_status"),
        ),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_notices_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_notices_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notices_dedupe_key")),
        sa.UniqueConstraint("event_id", name=op.f("uq_notices_event_id")),
    )
    op.create_index(
        "ix_notices_due",
        "notices",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
        sqlite_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.create_index("ix_notices_subscription_id_id", "notices", ["subscription_id", "id"])


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("refunds")
    op.drop_index("ix_charges_subscription_id_id", table_name="charges")
    op.drop_index("ix_charges_customer_uid_created_at", table_name="charges")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("reminded_period_no")
        batch.drop_column("awaiting_new_card")
