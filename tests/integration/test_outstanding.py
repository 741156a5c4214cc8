"""`billing drain` and the demo stop when ``outstanding`` says nothing is left: it must never
say so while a charge settles between its reads (the subscription of an open charge has no
due time; once the charge is paid, the next period is due)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, text

from billing.app import App
from billing.services.status import outstanding
from tests.world import World


def test_work_settling_meanwhile_is_never_counted_as_nothing_left(app: App) -> None:
    world = World(app)
    sid = world.subscribe()
    world.scheduler.run_pass()  # the charge is open; the subscription has no due time
    [charge] = world.charges()
    now = world.clock.now()
    settled: list[bool] = []

    def settle_after_first_read(*_: Any) -> None:
        if settled:
            return
        settled.append(True)
        with app.engine.begin() as other:  # another worker records the payment meanwhile
            other.execute(
                text("UPDATE charges SET status = 'paid' WHERE id = :id"), {"id": charge.id}
            )
            other.execute(
                text("UPDATE subscriptions SET next_charge_at = :t WHERE id = :id"),
                {"t": now - timedelta(hours=1), "id": sid},
            )

    event.listen(app.engine, "after_cursor_execute", settle_after_first_read)
    try:
        with app.transaction() as session:
            left = outstanding(session, now)
    finally:
        event.remove(app.engine, "after_cursor_execute", settle_after_first_read)
    assert settled
    assert left.total >= 1
