"""The card sales slip (매출전표) PortOne names for a paid charge: its ``receipt_url``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("receipt_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.drop_column("receipt_url")
