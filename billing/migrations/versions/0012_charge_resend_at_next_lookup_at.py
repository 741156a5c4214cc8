"""``charges.retry_at`` meant two things by the charge's status: split it into two columns.

- ``charges.resend_at``: a pending charge is not sent (again) before this moment (a resend
  after a connect error, a 429, a send held past its deadline).
- ``charges.next_lookup_at``: an unknown charge is not looked up (nor published for a
  lookup) before this moment: the lease of the lookup in flight, or the lookup backoff.

The upgrade copies ``retry_at`` into the column its status reads (pending: ``resend_at``;
unknown and processing: ``next_lookup_at``); no code reads the time of a charge in another
status, so it is dropped there. The downgrade writes whichever is set back into ``retry_at``.
Both columns are on the system clock, like ``retry_at``. No index included ``retry_at``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("resend_at", TIME, nullable=True))
        batch.add_column(sa.Column("next_lookup_at", TIME, nullable=True))
    op.execute("UPDATE charges SET resend_at = retry_at WHERE status = 'pending'")
    op.execute(
        "UPDATE charges SET next_lookup_at = retry_at WHERE status IN ('unknown', 'processing')"
    )
    with op.batch_alter_table("charges") as batch:
        batch.drop_column("retry_at")


def downgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("retry_at", TIME, nullable=True))
    op.execute(
        "UPDATE charges SET retry_at = CASE WHEN status = 'pending' THEN resend_at"
        " ELSE next_lookup_at END"
    )
    with op.batch_alter_table("charges") as batch:
        batch.drop_column("next_lookup_at")
        batch.drop_column("resend_at")
