"""``Idempotency-Key`` records in the database: which request runs, and the first answer.

``claim`` inserts the key before the request does anything (``INSERT ... ON CONFLICT DO
NOTHING`` on the key's unique constraint, committed at once): of two concurrent requests
with one key, exactly one inserts the row and runs; the other finds it in progress. The
runner then records its answer (``complete``), kept ``KEEP`` (24 h) and given back to every
later request with the same key and the same fingerprint; a different fingerprint is
refused. A request that ends without an answer worth keeping (a 5xx, an exception: its
transaction rolled back) gives the key back (``release``) so that it may be tried again. A
request whose process died leaves its row in progress: past its lease (``LEASE``) it is
reported as interrupted, never run again under the same key, because it may have taken
effect (a second subscription would be charged too); the caller looks, then uses a new key.

Times are the system clock's: how long a request has been running is not business time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Executable, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billing.db.api_tables import IdempotencyRecord

KEEP = timedelta(hours=24)
LEASE = timedelta(minutes=10)  # longer than any API request runs (PortOne timeouts included)
PURGE_BATCH = 100
IN_PROGRESS = "in_progress"
DONE = "done"


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: run it, then complete or release ``record_id``."""

    record_id: int


@dataclass(frozen=True)
class Replay:
    """The first answer to this key and body."""

    status: int
    body: str


@dataclass(frozen=True)
class InProgress:
    """Another request with this key is running."""


@dataclass(frozen=True)
class Interrupted:
    """A request with this key started long ago and never recorded its answer."""


@dataclass(frozen=True)
class Reused:
    """The key was used for another request (method, path or body)."""


Claim = Claimed | Replay | InProgress | Interrupted | Reused


def claim(
    session: Session, key: str, fingerprint: str, api_key_id: int | None, wall: datetime
) -> Claim:
    """Take ``key`` for this request, or say why not. Commit right after."""
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.key == key, IdempotencyRecord.expires_at <= wall
        )
    )
    inserted: int | None = session.execute(
        _insert(session, key, fingerprint, api_key_id, wall)
    ).scalar()
    if inserted is not None:
        _purge(session, wall)
        return Claimed(inserted)
    query = select(IdempotencyRecord).where(IdempotencyRecord.key == key).with_for_update()
    record = session.scalar(query)
    if record is None:  # released between our insert and our read: the caller may try again
        return InProgress()
    return _existing(record, fingerprint, wall)


def _existing(record: IdempotencyRecord, fingerprint: str, wall: datetime) -> Claim:
    if record.fingerprint != fingerprint:
        return Reused()
    if record.state == DONE and record.response_status is not None:
        return Replay(record.response_status, record.response_body or "")
    return InProgress() if record.locked_until > wall else Interrupted()


def _insert(
    session: Session, key: str, fingerprint: str, api_key_id: int | None, wall: datetime
) -> Executable:
    values = {
        "key": key,
        "fingerprint": fingerprint,
        "api_key_id": api_key_id,
        "state": IN_PROGRESS,
        "locked_until": wall + LEASE,
        "created_at": wall,
        "expires_at": wall + KEEP,
    }
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(IdempotencyRecord).values(**values)
        return pg.on_conflict_do_nothing(index_elements=["key"]).returning(IdempotencyRecord.id)
    lite = sqlite.insert(IdempotencyRecord).values(**values)
    return lite.on_conflict_do_nothing(index_elements=["key"]).returning(IdempotencyRecord.id)


def complete(session: Session, record_id: int, status: int, body: str) -> None:
    record = session.get(IdempotencyRecord, record_id, with_for_update=True)
    if record is not None:
        record.state, record.response_status, record.response_body = DONE, status, body


def release(session: Session, record_id: int) -> None:
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == record_id, IdempotencyRecord.state == IN_PROGRESS
        )
    )


def _purge(session: Session, wall: datetime) -> None:
    """Forget a few expired keys (each claim does a little of the cleaning)."""
    expired = (
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.expires_at <= wall)
        .limit(PURGE_BATCH)
        .scalar_subquery()
    )
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
