"""An index on charges.imp_uid (where set): the operator console finds a charge by PortOne's
imp_uid without reading every charge.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WHERE = sa.text("imp_uid IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_charges_imp_uid",
        "charges",
        ["imp_uid"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_charges_imp_uid", table_name="charges")
