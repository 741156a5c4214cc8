"""API keys of the merchant's backend: created, listed, revoked, and checked on each request.

A key is ``bk_`` and 43 URL-safe characters (256 random bits). It is shown once, when it is
created; the database keeps only its SHA-256 and its first ``PREFIX_LENGTH`` characters. A
request's key finds its candidate rows by that prefix and is then compared with each stored
hash by ``hmac.compare_digest`` (constant time). Key times follow the system clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.db.api_tables import ApiKey
from billing.errors import Conflict, InvalidInput, NotFound

KEY_PREFIX = "bk_"
PREFIX_LENGTH = 11  # "bk_" and 8 characters: about 48 bits, enough to find one row
KEY_PATTERN = re.compile(r"^bk_[A-Za-z0-9_-]{43}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LAST_USED_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often


@dataclass(frozen=True)
class NewKey:
    name: str
    key: str  # shown once, never stored
    read_only: bool

    def view(self) -> dict[str, object]:
        return {"name": self.name, "key": self.key, "read_only": self.read_only}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and what it may do."""

    key_id: int
    name: str
    read_only: bool

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"--name {name!r} must be 1-64 characters of letters, digits and _ . - "
            "(starting with a letter or digit)"
        )
    return name


def create_key(session: Session, name: str, read_only: bool, wall: datetime) -> NewKey:
    """A new key named ``name`` (no other live key may have that name)."""
    check_name(name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_key(key),
        read_only=read_only,
        created_at=wall,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"an API key named {name!r} exists already (revoke it first)") from None
    return NewKey(name, key, read_only)


def list_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.id)).all()


def revoke_key(session: Session, name: str, wall: datetime) -> ApiKey:
    """Revoke the live key named ``name``: it is refused from the next request on."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).with_for_update()
    )
    if row is None:
        raise NotFound(f"no live API key named {name!r} (see `billing api-keys list`)")
    row.revoked_at = wall
    return row


def authenticate(session: Session, presented: str, wall: datetime) -> Principal | None:
    """The live key ``presented`` is, or None (unknown, malformed or revoked)."""
    if not KEY_PATTERN.match(presented):
        return None
    digest = hash_key(presented)
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LENGTH])
    ).all()
    for row in candidates:
        if hmac.compare_digest(row.key_hash, digest) and row.revoked_at is None:
            _touch(session, row, wall)
            return Principal(row.id, row.name, row.read_only)
    return None


def _touch(session: Session, row: ApiKey, wall: datetime) -> None:
    if row.last_used_at is not None and wall - row.last_used_at < LAST_USED_EVERY:
        return
    session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=wall))
