"""At most one open charge (pending, processing or unknown) per subscription, on real
PostgreSQL: the partial unique index ``uq_charges_open_per_subscription`` (migration 0001)
refuses a second one, whether inserted or made open again by an update.
``settlement.note_siblings`` relies on it: a batch of answers never holds two charges of one
subscription, and no other charge of it can be pending while one is being settled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from billing.app import App
from billing.db.tables import Charge
from billing.domain.charges import ChargeStatus
from tests.world import World

OPEN = [ChargeStatus.PENDING, ChargeStatus.PROCESSING, ChargeStatus.UNKNOWN]
INDEX = "uq_charges_open_per_subscription"


@pytest.fixture
def world(app: App) -> World:
    return World(app)


def another_attempt(first: Charge, key: str, status: ChargeStatus) -> Charge:
    """The row the claim would write for the next attempt of ``first``'s period."""
    values = {a.key: getattr(first, a.key) for a in inspect(Charge).column_attrs}
    attempt = first.attempt + 1
    del values["id"]
    values |= {"attempt": attempt, "status": status, "imp_uid": None}
    values["merchant_uid"] = f"sub-{key}-{first.period_no}-{attempt}"
    return Charge(**values)


def refused_by(error: pytest.ExceptionInfo[IntegrityError]) -> str | None:
    return error.value.orig.diag.constraint_name  # type: ignore[union-attr]


def key_of(world: World, sid: int) -> str:
    return world.subscription(sid).key


def test_a_second_open_charge_of_a_subscription_is_refused(world: World) -> None:
    sid = world.subscribe()
    world.scheduler.run_pass()  # the claim: charge 1 of period 1, pending
    [claimed] = world.charges(sid)
    assert claimed.status == ChargeStatus.PENDING
    key = key_of(world, sid)
    for status in OPEN:
        with pytest.raises(IntegrityError) as error, world.app.transaction() as session:
            session.add(another_attempt(claimed, key, status))
        assert refused_by(error) == INDEX, status
    with world.app.transaction() as session:  # a settled one is no second open charge
        session.add(another_attempt(claimed, key, ChargeStatus.FAILED))
    assert [c.status for c in world.charges(sid)] == ["pending", "failed"]
    world.subscribe("cust-2")  # another subscription's charge is not refused
    world.scheduler.run_pass()
    assert [c.status for c in world.charges()] == ["pending", "failed", "pending"]


def test_a_settled_charge_cannot_be_made_open_while_a_retry_is_open(world: World) -> None:
    sid = world.subscribe()
    world.gateway.script = ["decline"]
    world.cycle()
    world.clock.advance(timedelta(days=1))
    world.scheduler.run_pass()  # the dunning retry: attempt 2, pending
    declined, retry = world.charges(sid)
    assert (declined.status, retry.status) == ("failed", "pending")
    for status in OPEN:
        with pytest.raises(IntegrityError) as error, world.app.transaction() as session:
            row = session.get(Charge, declined.id)
            assert row is not None
            row.status = status
        assert refused_by(error) == INDEX, status
    assert [c.status for c in world.charges(sid)] == ["failed", "pending"]
