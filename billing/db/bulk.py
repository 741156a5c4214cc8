"""Bulk inserts that return their ids, for the claim batches and the importer.

A multi-row ``INSERT ... RETURNING`` of hundreds of rows has thousands of placeholders: its
text is too long for psycopg's query cache, and psycopg parses it again on every execution,
which took half of the scheduler's CPU and most of an import's (docs/performance.md). Here the
rows go in through ``executemany`` of one short statement (psycopg pipelines it, SQLite loops
in C) with their ids known beforehand:

- PostgreSQL: the ids are taken from the table's sequence first, in one query. (Reading them
  back afterwards by a unique column was tried: psycopg prepares a statement after a few
  executions, PostgreSQL then keeps a generic plan made while the table was small, and in a
  long import that plan scanned the whole growing table for every chunk.)
- SQLite (the embedded default, one writer): the ids are read back by a UNIQUE column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, insert, select, text
from sqlalchemy.orm import Session

LOOKUP_CHUNK = 500  # values per IN (...) when reading ids back on SQLite
RESERVE = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def insert_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], unique: Column[Any]
) -> list[int]:
    """Insert ``rows`` into ``table`` and return their ids, in the order of ``rows``.
    ``unique`` is a UNIQUE column of ``table`` that tells the new rows apart."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = [int(n) for (n,) in session.execute(RESERVE, {"table": table.name, "n": len(rows)})]
        session.execute(
            insert(table), [{**row, "id": id_} for row, id_ in zip(rows, ids, strict=True)]
        )
        return ids
    session.execute(insert(table), list(rows))
    return _ids_by(session, table, [row[unique.name] for row in rows], unique)


def _ids_by(session: Session, table: Table, values: list[Any], unique: Column[Any]) -> list[int]:
    ids: dict[Any, int] = {}
    for offset in range(0, len(values), LOOKUP_CHUNK):
        part = values[offset : offset + LOOKUP_CHUNK]
        found = session.execute(select(unique, table.c.id).where(unique.in_(part)))
        ids.update({value: row_id for value, row_id in found})
    return [ids[value] for value in values]
