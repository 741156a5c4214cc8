"""billing.db.bulk on both databases: every id it returns is the row it was given, in order,
with rows already in the table and across the lookup chunks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Table, select

from billing.app import build_app
from billing.config import load_settings
from billing.db.bulk import LOOKUP_CHUNK, insert_returning_ids
from billing.db.tables import Customer

CUSTOMERS = cast(Table, Customer.__table__)
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def rows(prefix: str, count: int) -> list[dict[str, object]]:
    return [
        {
            "customer_uid": f"{prefix}-{n}",
            "name": None,
            "email": None,
            "phone": None,
            "created_at": NOW,
        }
        for n in range(count)
    ]


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bulk.db'}"
    return cast(str, request.getfixturevalue("db_url"))


def test_ids_name_the_rows_they_were_returned_for(database: str) -> None:
    app = build_app(load_settings({"BILLING_DATABASE_URL": database}))
    try:
        with app.transaction() as session:
            earlier = insert_returning_ids(
                session, CUSTOMERS, rows("a", 3), CUSTOMERS.c.customer_uid
            )
        # out of alphabetical order, more than one lookup chunk, after rows already there
        given = list(reversed(rows("b", LOOKUP_CHUNK + 7)))
        with app.transaction() as session:
            ids = insert_returning_ids(session, CUSTOMERS, given, CUSTOMERS.c.customer_uid)
            assert insert_returning_ids(session, CUSTOMERS, [], CUSTOMERS.c.customer_uid) == []
        with app.transaction() as session:
            found = session.execute(select(Customer.id, Customer.customer_uid))
            stored = {row_id: uid for row_id, uid in found}
    finally:
        app.close()
    assert len(set(ids)) == len(given) and not set(ids) & set(earlier)
    assert [stored[i] for i in ids] == [row["customer_uid"] for row in given]
    assert len(stored) == len(given) + 3
