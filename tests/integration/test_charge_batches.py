"""Recording a batch of PortOne answers (``finish_charges``): what it costs in round trips,
and the period rules it keeps while it saves them (a second payment of one period is raised,
a pending attempt of a paid period is never sent)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from billing.app import App
from billing.db.tables import Charge
from billing.domain.charges import ChargeStatus
from tests.world import World


@pytest.fixture
def world(app: App) -> World:
    return World(app)


@contextmanager
def counted(app: App) -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL inside the block (an executemany counts once)."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(app.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(app.engine, "before_cursor_execute", seen)


def _record_batch(world: World, size: int) -> list[str]:
    """``size`` subscriptions claimed, their batch sent: the statements of its recording."""
    for n in range(size):
        world.subscribe(f"batch-{size}-{n}")
    world.scheduler.run_pass()
    ids = [charge.id for charge in world.charges() if charge.status == "pending"]
    assert len(ids) == size
    recorded = world.pipeline.sender._record
    statements: list[str] = []

    def spy(pairs: Any) -> Any:
        with counted(world.app) as inside:
            try:
                return recorded(pairs)
            finally:
                statements.extend(inside)

    world.pipeline.sender._record = spy  # type: ignore[method-assign]
    world.pipeline.charge(ids)
    assert {c.status for c in world.charges() if c.id in ids} == {"paid"}
    return statements


def test_recording_a_batch_of_payments_costs_no_round_trip_per_payment(world: World) -> None:
    one = len(_record_batch(world, 1))
    sixteen = len(_record_batch(world, 16))
    # each payment still writes its rows; what must not grow is a query per payment
    # (before: a sibling query, a pending-sibling lock and a re-read of the subscription)
    assert sixteen - one <= 15 // 2, (one, sixteen)


COPIED = (
    "subscription_id",
    "period_no",
    "customer_uid",
    "plan_id",
    "plan_version",
    "name",
    "amount",
    "card_quota",
    "period_start",
    "period_end",
    "created_at",
    "updated_at",
)


def _meanwhile(world: World, monkeypatch: pytest.MonkeyPatch, charge_id: int, change: Any) -> None:
    """While PortOne works on the call, ``change(session, row)`` commits on its own."""
    call = world.gateway.again

    def again(request: Any, send_within: float | None = None) -> Any:
        with world.app.transaction() as session:
            row = session.get(Charge, charge_id)
            assert row is not None
            change(session, row)
        return call(request, send_within)

    monkeypatch.setattr(world.gateway, "again", again)


def _sibling(row: Charge, **values: Any) -> Charge:
    return Charge(
        **{column: getattr(row, column) for column in COPIED},
        attempt=2,
        merchant_uid=f"{row.merchant_uid}-other",
        sends=0,
        lookups=0,
        refunded_amount=0,
        **values,
    )


def test_a_batch_answer_paying_a_period_already_paid_is_raised_as_a_duplicate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another attempt of the period was recorded paid while PortOne worked on this one."""
    sid = world.subscribe()
    world.scheduler.run_pass()
    [sent] = world.charges()

    def paid_elsewhere(session: Any, row: Charge) -> None:
        session.add(_sibling(row, status=ChargeStatus.PAID, imp_uid="imps_other"))

    _meanwhile(world, monkeypatch, sent.id, paid_elsewhere)
    world.pipeline.charge([sent.id])
    first, other = world.charges()
    assert (first.status, other.status) == ("paid", "paid")
    assert first.duplicate_of == other.id
    assert "duplicate_payment" in world.events(sid)


def test_a_batch_answer_paying_a_period_fails_its_pending_attempt_unsent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While PortOne worked on the call, its row was failed and another attempt of the same
    period created (pending): the payment is recorded and the other attempt never sent."""
    world.subscribe()
    world.scheduler.run_pass()
    [sent] = world.charges()

    def failed_and_retried(session: Any, row: Charge) -> None:
        row.status = ChargeStatus.FAILED
        session.flush()
        session.add(_sibling(row, status=ChargeStatus.PENDING))

    _meanwhile(world, monkeypatch, sent.id, failed_and_retried)
    world.pipeline.charge([sent.id])
    paid, other = world.charges()
    assert paid.status == "paid"
    assert (other.status, other.fail_reason) == ("failed", "superseded")
    assert [request.merchant_uid for request in world.gateway.sent] == [paid.merchant_uid]
