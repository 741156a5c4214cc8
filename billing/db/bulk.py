"""Bulk inserts that return their ids, for the claim batches and the importer.

A multi-row ``INSERT ... RETURNING`` of hundreds of rows has thousands of placeholders: its
text is too long for psycopg's query cache, and psycopg parses it again on every execution,
which took half of the scheduler's CPU and most of an import's (docs/performance.md). Here the
rows go in through ``executemany`` of one short statement (psycopg pipelines it, SQLite loops
in C), and the ids are read back by a UNIQUE column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, insert, select
from sqlalchemy.orm import Session

LOOKUP_CHUNK = 1000  # values per IN (...) when reading the ids back


def insert_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], unique: Column[Any]
) -> list[int]:
    """Insert ``rows`` into ``table``; their ids in the order of ``rows``, found by the value
    each row has in ``unique`` (a UNIQUE column of ``table``)."""
    if not rows:
        return []
    session.execute(insert(table), list(rows))
    values = [row[unique.name] for row in rows]
    ids: dict[Any, int] = {}
    for offset in range(0, len(values), LOOKUP_CHUNK):
        part = values[offset : offset + LOOKUP_CHUNK]
        found = session.execute(select(unique, table.c.id).where(unique.in_(part)))
        ids.update({value: row_id for value, row_id in found})
    return [ids[value] for value in values]
