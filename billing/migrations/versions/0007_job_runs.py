"""Jobs the scheduler runs at most once a period, whichever scheduler gets there first: the
daily ledger reconciliation (SPEC 10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    jobs = op.create_table(
        "job_runs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_started_at", TIME, nullable=True),
        sa.Column("last_finished_at", TIME, nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_runs")),
    )
    op.bulk_insert(jobs, [{"name": "ledger"}])


def downgrade() -> None:
    op.drop_table("job_runs")
