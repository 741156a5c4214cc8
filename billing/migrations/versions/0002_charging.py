"""Charging: the shared test clock and the time of a charge's last send.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("now", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_test_clock_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_clock")),
    )
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("sent_at", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.drop_column("sent_at")
    op.drop_table("test_clock")
