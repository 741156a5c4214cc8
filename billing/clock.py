"""Where "now" comes from. Services take ``now`` as an argument; entry points ask a Clock.

Two clocks travel together as one ``Clocks(billing, system)`` (``App.clocks``): ``billing``
is business time (due dates, periods, what a customer sees), ``system`` is real time
(leases, retry and lookup timers, ``updated_at``, PortOne's side). A test fixes both by
giving the app ``Clocks(FixedClock(..), FixedClock(..))``.

In sandbox mode the billing clock is the shared test clock stored in the database, so the
scheduler and every worker agree on it. It stands still until ``billing clock set`` or
``billing clock advance`` moves it; before it was ever set it follows the system clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing.db.tables import TestClock


def system_now() -> datetime:
    """The system clock, for the few places that have no ``Clocks`` at hand."""
    return datetime.now(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return system_now()


@dataclass(frozen=True)
class Clocks:
    """The billing clock and the system clock, passed together everywhere."""

    billing: Clock
    system: Clock


class FixedClock:
    """A clock for tests: stands still until moved."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


class DatabaseClock:
    """The shared test clock (sandbox mode only)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def now(self) -> datetime:
        with self._sessions() as session:
            stored = session.scalar(select(TestClock.now).where(TestClock.id == 1))
        return stored if stored is not None else datetime.now(UTC)

    def set(self, moment: datetime) -> datetime:
        with self._sessions.begin() as session:
            row = session.get(TestClock, 1, with_for_update=True)
            if row is None:
                session.add(TestClock(id=1, now=moment, updated_at=datetime.now(UTC)))
            else:
                row.now, row.updated_at = moment, datetime.now(UTC)
        return moment

    def advance(self, delta: timedelta) -> datetime:
        with self._sessions.begin() as session:
            row = session.get(TestClock, 1, with_for_update=True)
            moment = (row.now if row is not None else datetime.now(UTC)) + delta
            if row is None:
                session.add(TestClock(id=1, now=moment, updated_at=datetime.now(UTC)))
            else:
                row.now, row.updated_at = moment, datetime.now(UTC)
        return moment
