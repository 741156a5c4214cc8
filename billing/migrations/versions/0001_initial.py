"""Initial schema: customers, versioned plans, subscriptions, charges, append-only events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

APPEND_ONLY_POSTGRESQL = (
    """
    CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the event log is append-only';
    END
    $$
    """,
    """
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only()
    """,
)
APPEND_ONLY_SQLITE = tuple(
    f"""
    CREATE TRIGGER events_no_{verb.lower()} BEFORE {verb} ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END
    """
    for verb in ("UPDATE", "DELETE")
)


def upgrade() -> None:
    op.create_table(
        "catalog_loads",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("notify", sa.JSON(), nullable=False),
        sa.Column("plan_versions", sa.JSON(), nullable=False),
        sa.Column("loaded_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_loads")),
    )
    op.create_table(
        "customers",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("customer_uid", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("customer_uid", name=op.f("uq_customers_customer_uid")),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("archived_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.create_table(
        "plan_versions",
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("interval", sa.String(length=32), nullable=True),
        sa.Column("cron", sa.String(length=120), nullable=True),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("prorate_first", sa.Boolean(), nullable=False),
        sa.Column("card_quota", sa.Integer(), nullable=True),
        sa.Column("retry_after", sa.JSON(), nullable=False),
        sa.Column("final_action", sa.String(length=8), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint(
            "(interval IS NULL) <> (cron IS NULL)", name=op.f("ck_plan_versions_one_schedule")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_plan_versions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_plan_versions_plan_id_plans")
        ),
        sa.PrimaryKeyConstraint("plan_id", "version", name=op.f("pk_plan_versions")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=12), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("next_plan_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("trial_end", TIME, nullable=True),
        sa.Column("anchor_at", TIME, nullable=False),
        sa.Column("current_period_start", TIME, nullable=True),
        sa.Column("current_period_end", TIME, nullable=True),
        sa.Column("current_cycle", sa.Integer(), nullable=True),
        sa.Column("period_no", sa.Integer(), nullable=False),
        sa.Column("due_period_start", TIME, nullable=False),
        sa.Column("due_period_end", TIME, nullable=False),
        sa.Column("due_cycle", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("next_charge_at", TIME, nullable=True),
        sa.Column("first_failed_at", TIME, nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", TIME, nullable=True),
        sa.Column("paused_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'paused', 'canceled')",
            name=op.f("ck_subscriptions_status"),
        ),
        sa.CheckConstraint(
            "period_no >= 1 AND attempt >= 1", name=op.f("ck_subscriptions_counters")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriptions_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["next_plan_id"], ["plans.id"], name=op.f("fk_subscriptions_next_plan_id_plans")
        ),
        sa.ForeignKeyConstraint(
            ["plan_id", "plan_version"],
            ["plan_versions.plan_id", "plan_versions.version"],
            name=op.f("fk_subscriptions_plan_id_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("key", name=op.f("uq_subscriptions_key")),
    )
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"], unique=False)
    op.create_index(
        "ix_subscriptions_due",
        "subscriptions",
        ["next_charge_at"],
        unique=False,
        postgresql_where=sa.text("next_charge_at IS NOT NULL"),
        sqlite_where=sa.text("next_charge_at IS NOT NULL"),
    )
    op.create_index("ix_subscriptions_status", "subscriptions", ["status"], unique=False)
    op.create_table(
        "charges",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("subscription_id", ID, nullable=False),
        sa.Column("period_no", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("merchant_uid", sa.String(length=40), nullable=False),
        sa.Column("customer_uid", sa.String(length=80), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("card_quota", sa.Integer(), nullable=True),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("period_end", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("imp_uid", sa.String(length=64), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("decline_class", sa.String(length=16), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("retry_at", TIME, nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'paid', 'failed', 'unknown')",
            name=op.f("ck_charges_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_charges_amount_positive")),
        sa.CheckConstraint("period_no >= 1 AND attempt >= 1", name=op.f("ck_charges_counters")),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name=op.f("ck_charges_refund")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_charges_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charges")),
        sa.UniqueConstraint("merchant_uid", name=op.f("uq_charges_merchant_uid")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_no",
            "attempt",
            name=op.f("uq_charges_subscription_id_period_no_attempt"),
        ),
    )
    op.create_index(
        "ix_charges_open",
        "charges",
        ["status", "updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
        sqlite_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
    )
    op.create_index(
        "uq_charges_open_per_subscription",
        "charges",
        ["subscription_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
        sqlite_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
    )
    op.create_index(
        "uq_charges_paid_period",
        "charges",
        ["subscription_id", "period_no"],
        unique=True,
        postgresql_where=sa.text("status = 'paid'"),
        sqlite_where=sa.text("status = 'paid'"),
    )
    op.create_table(
        "events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("subscription_id", ID, nullable=True),
        sa.Column("charge_id", ID, nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_events_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_events_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(
        "ix_events_subscription_id_id", "events", ["subscription_id", "id"], unique=False
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in APPEND_ONLY_SQLITE if sqlite else APPEND_ONLY_POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER events_append_only ON events")
        op.execute("DROP FUNCTION events_append_only()")
    op.drop_index("ix_events_subscription_id_id", table_name="events")
    op.drop_table("events")
    op.drop_index(
        "uq_charges_paid_period",
        table_name="charges",
        postgresql_where=sa.text("status = 'paid'"),
        sqlite_where=sa.text("status = 'paid'"),
    )
    op.drop_index(
        "uq_charges_open_per_subscription",
        table_name="charges",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
        sqlite_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
    )
    op.drop_index(
        "ix_charges_open",
        table_name="charges",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
        sqlite_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
    )
    op.drop_table("charges")
    op.drop_index("ix_subscriptions_status", table_name="subscriptions")
    op.drop_index(
        "ix_subscriptions_due",
        table_name="subscriptions",
        postgresql_where=sa.text("next_charge_at IS NOT NULL"),
        sqlite_where=sa.text("next_charge_at IS NOT NULL"),
    )
    op.drop_index("ix_subscriptions_customer_id", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("plan_versions")
    op.drop_table("plans")
    op.drop_table("customers")
    op.drop_table("catalog_loads")
