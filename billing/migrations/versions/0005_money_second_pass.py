"""Money, second pass: set-aside rows, refusals awaiting a lookup, duplicate payments.

- ``subscriptions.set_aside_reason`` / ``set_aside_at``: a row the scheduler could not
  handle, kept out of the claim loop with the reason an operator sees (invariant 10).
- ``subscriptions.retry_at_once``: the card was updated while a charge was in flight; if
  that charge fails, it is retried at once instead of on the dunning schedule.
- ``subscriptions.look_before_send``: PortOne knew an attempt this database did not (a
  restore, a failover): every attempt is looked up before it is sent until one is new.
- ``charges.refusal``: PortOne refused the send; the refusal is believed only after a
  lookup finds nothing (invariants 9 and 11).
- ``charges.lookups``: lookups made for the charge (their backoff, and a ceiling to watch).
- ``charges.duplicate_of``: a second paid charge of one period (PortOne paid two attempts):
  recorded as paid, pointing at the first, for an operator to refund. The paid-per-period
  unique index ignores it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
PAID = "status = 'paid'"
PAID_ONCE = "status = 'paid' AND duplicate_of IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("set_aside_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("set_aside_at", TIME, nullable=True))
        batch.add_column(
            sa.Column("retry_at_once", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("look_before_send", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("charges") as batch:
        batch.add_column(sa.Column("refusal", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lookups", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("duplicate_of", ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_charges_duplicate_of_charges"), "charges", ["duplicate_of"], ["id"]
        )
    _paid_once(PAID_ONCE)
    op.create_index(
        "ix_subscriptions_set_aside",
        "subscriptions",
        ["set_aside_at"],
        postgresql_where=sa.text("set_aside_at IS NOT NULL"),
        sqlite_where=sa.text("set_aside_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscriptions_set_aside", table_name="subscriptions")
    _paid_once(PAID)
    with op.batch_alter_table("charges") as batch:
        batch.drop_constraint(op.f("fk_charges_duplicate_of_charges"), type_="foreignkey")
        batch.drop_column("duplicate_of")
        batch.drop_column("lookups")
        batch.drop_column("refusal")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("look_before_send")
        batch.drop_column("retry_at_once")
        batch.drop_column("set_aside_at")
        batch.drop_column("set_aside_reason")


def _paid_once(where: str) -> None:
    op.drop_index("uq_charges_paid_period", table_name="charges")
    op.create_index(
        "uq_charges_paid_period",
        "charges",
        ["subscription_id", "period_no"],
        unique=True,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )
