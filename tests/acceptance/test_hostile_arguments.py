"""SQL text in command-line arguments is data, never SQL (a check of the security probe of
issue 14 that held, kept): refused where the argument has a shape, stored literally where it
is free text, and every table is still there."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import CliRunner, snapshot

INJECTIONS = ["x'; DROP TABLE customers; --", "1 OR 1=1", "' OR '1'='1", "1; SELECT pg_sleep(5)"]


@pytest.mark.parametrize("argument", INJECTIONS)
def test_sql_text_where_an_identifier_is_expected_is_refused(
    cli: CliRunner, db_url: str, argument: str
) -> None:
    ok(cli("customers", "add", "c1", "--email", "c1@example.com"))
    before = snapshot(db_url)
    refused(cli("customers", "add", argument))
    refused(cli("subscriptions", "show", argument))
    refused(cli("subscriptions", "list", "--status", argument))
    refused(cli("subscriptions", "create", "--customer", "c1", "--plan", argument))
    assert snapshot(db_url) == before


def test_sql_text_in_free_text_is_stored_as_written(cli: CliRunner, db_url: str) -> None:
    name = "Robert'); DROP TABLE customers; --"
    ok(cli("customers", "add", "bobby", "--name", name))
    ok(cli("subscriptions", "create", "--customer", "bobby", "--plan", "basic-monthly"))
    [subscription] = js(cli("subscriptions", "list", "--json"))
    assert subscription["customer_uid"] == "bobby"
    engine = create_engine(db_url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT name FROM customers")).scalars().all()
    engine.dispose()
    assert stored == [name]
