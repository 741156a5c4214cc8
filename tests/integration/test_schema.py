"""Migrations and the constraints that protect money, on real PostgreSQL (and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from billing.db import migrate
from billing.db.engine import make_engine
from billing.db.tables import Base

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated(request: pytest.FixtureRequest, fresh_pg_url: str, tmp_path: Path) -> Iterator[Engine]:
    url = fresh_pg_url if request.param == "postgresql" else f"sqlite:///{tmp_path}/m.db"
    engine = make_engine(url)
    before, after = migrate.upgrade(engine)
    assert (before, after) == (None, migrate.head_revision())
    yield engine
    engine.dispose()


def test_migrations_build_the_schema_from_empty(migrated: Engine) -> None:
    tables = set(inspect(migrated).get_table_names())
    assert {"customers", "plans", "plan_versions", "subscriptions", "charges", "events"} <= tables
    assert migrate.current_revision(migrated) == migrate.head_revision()


def test_migrations_match_the_models_exactly(migrated: Engine) -> None:
    with migrated.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_twice_changes_nothing(migrated: Engine) -> None:
    assert migrate.upgrade(migrated) == (migrate.head_revision(), migrate.head_revision())


def _seed(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO customers (customer_uid, created_at) VALUES ('c1', :t)"), {"t": T}
        )
        c.execute(text("INSERT INTO plans VALUES ('p', 1, NULL, :t, :t)"), {"t": T})
        c.execute(
            text(
                "INSERT INTO plan_versions VALUES ('p', 1, 'P', 9900, 'Asia/Seoul', '1 month', NULL,"
                " 0, :f, NULL, '[]', 'cancel', :t)"
            ),
            {"t": T, "f": False},
        )
        c.execute(
            text(
                "INSERT INTO subscriptions (key, customer_id, plan_id, plan_version, status,"
                " started_at, anchor_at, period_no, due_period_start, due_period_end, due_cycle,"
                " attempt, cancel_at_period_end, awaiting_new_card, reminded_period_no, created_at,"
                " updated_at) VALUES ('abcdefgh1234', 1, 'p', 1, 'active', :t, :t, 1, :t, :t, 0, 1,"
                " :f, :f, 0, :t, :t)"
            ),
            {"t": T, "f": False},
        )


def _charge(engine: Engine, merchant_uid: str, period: int, attempt: int, status: str) -> None:
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO charges (subscription_id, period_no, attempt, merchant_uid, customer_uid,"
                " plan_id, plan_version, name, amount, period_start, period_end, status, sends,"
                " refunded_amount, created_at, updated_at) VALUES (1, :p, :a, :m, 'c1', 'p', 1, 'P',"
                " 9900, :t, :t, :s, 0, 0, :t, :t)"
            ),
            {"p": period, "a": attempt, "m": merchant_uid, "s": status, "t": T},
        )


def test_the_charge_identity_is_unique(migrated: Engine) -> None:
    _seed(migrated)
    _charge(migrated, "sub-abcdefgh1234-1-1", 1, 1, "failed")
    with pytest.raises(IntegrityError):
        _charge(migrated, "sub-abcdefgh1234-1-1b", 1, 1, "failed")  # same (sub, period, attempt)
    with pytest.raises(IntegrityError):
        _charge(migrated, "sub-abcdefgh1234-1-1", 1, 2, "failed")  # same merchant_uid


def test_at_most_one_paid_charge_per_period(migrated: Engine) -> None:
    _seed(migrated)
    _charge(migrated, "sub-abcdefgh1234-1-1", 1, 1, "paid")
    with pytest.raises(IntegrityError):
        _charge(migrated, "sub-abcdefgh1234-1-2", 1, 2, "paid")
    _charge(migrated, "sub-abcdefgh1234-2-1", 2, 1, "paid")  # the next period may be paid


def test_at_most_one_open_charge_per_subscription(migrated: Engine) -> None:
    _seed(migrated)
    _charge(migrated, "sub-abcdefgh1234-1-1", 1, 1, "unknown")
    with pytest.raises(IntegrityError):
        _charge(migrated, "sub-abcdefgh1234-2-1", 2, 1, "pending")


def test_money_columns_refuse_nonsense(migrated: Engine) -> None:
    _seed(migrated)
    with pytest.raises(IntegrityError):
        _charge(migrated, "sub-abcdefgh1234-1-1", 1, 1, "refunded")  # not a charge status
    with pytest.raises(IntegrityError), migrated.begin() as c:
        c.execute(text("UPDATE plan_versions SET amount = 0"))


def test_the_event_log_is_append_only(migrated: Engine) -> None:
    _seed(migrated)
    with migrated.begin() as c:
        c.execute(
            text(
                "INSERT INTO events (kind, data, occurred_at, recorded_at) VALUES ('x', '{}', :t, :t)"
            ),
            {"t": T},
        )
    for statement in ("UPDATE events SET kind = 'y'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), migrated.begin() as c:
            c.execute(text(statement))
    with migrated.connect() as c:
        assert c.execute(text("SELECT kind FROM events")).scalars().all() == ["x"]


def test_schema_revision_constant_is_the_newest_migration() -> None:
    assert migrate.head_revision() == migrate.SCHEMA_REVISION


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0012_moves_retry_at_into_the_column_each_status_reads_and_back(
    dialect: str, fresh_pg_url: str, tmp_path: Path
) -> None:
    """A pending charge's retry_at was its resend time, an unknown one's its next lookup."""
    url = fresh_pg_url if dialect == "postgresql" else f"sqlite:///{tmp_path}/m.db"
    engine = make_engine(url)
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0011")
    _seed(engine)
    later = {
        "pending": datetime(2026, 1, 2, tzinfo=UTC),
        "unknown": datetime(2026, 1, 3, tzinfo=UTC),
    }
    with engine.begin() as c:
        for n in (2, 3):  # one open charge per subscription
            c.execute(
                text(
                    "INSERT INTO subscriptions (key, customer_id, plan_id, plan_version, status,"
                    " started_at, anchor_at, period_no, due_period_start, due_period_end,"
                    " due_cycle, attempt, cancel_at_period_end, awaiting_new_card,"
                    " reminded_period_no, created_at, updated_at) SELECT :k, customer_id,"
                    " plan_id, plan_version, status, started_at, anchor_at, period_no,"
                    " due_period_start, due_period_end, due_cycle, attempt, cancel_at_period_end,"
                    " awaiting_new_card, reminded_period_no, created_at, updated_at"
                    " FROM subscriptions WHERE id = 1"
                ),
                {"k": f"abcdefgh000{n}"},
            )
    for sid, status in ((1, "pending"), (2, "unknown"), (3, "failed")):
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO charges (subscription_id, period_no, attempt, merchant_uid,"
                    " customer_uid, plan_id, plan_version, name, amount, period_start,"
                    " period_end, status, sends, refunded_amount, created_at, updated_at,"
                    " retry_at) VALUES (:sid, 1, 1, :m, 'c1', 'p', 1, 'P', 9900, :t, :t, :s, 1,"
                    " 0, :t, :t, :r)"
                ),
                {"sid": sid, "m": f"m-{status}", "s": status, "t": T, "r": later.get(status)},
            )
    select_new = "SELECT status, resend_at, next_lookup_at FROM charges ORDER BY id"
    select_old = "SELECT status, retry_at FROM charges ORDER BY id"

    def at(value: object) -> datetime | None:  # SQLite reads a string back
        if value is None or isinstance(value, datetime):
            return value.astimezone(UTC) if value else None
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

    migrate.upgrade(engine)
    with engine.connect() as c:
        rows = [(s, at(r), at(n)) for s, r, n in c.execute(text(select_new))]
        assert "retry_at" not in {col["name"] for col in inspect(c).get_columns("charges")}
    assert rows == [
        ("pending", later["pending"], None),
        ("unknown", None, later["unknown"]),
        ("failed", None, None),
    ]
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011")
    with engine.connect() as c:
        back = [(s, at(r)) for s, r in c.execute(text(select_old))]
        columns = {col["name"] for col in inspect(c).get_columns("charges")}
    assert back == [("pending", later["pending"]), ("unknown", later["unknown"]), ("failed", None)]
    assert not {"resend_at", "next_lookup_at"} & columns
    engine.dispose()
