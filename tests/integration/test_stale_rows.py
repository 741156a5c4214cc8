"""A subscription locked for a lifecycle action is read as it is now.

The chaos run found a pause that undid a cancel: the operator's transaction had read the
subscription before a cancel committed, then locked it and still saw it active (SQLAlchemy
keeps the values of an object it already holds), so the pause wrote "paused" over
"canceled", a resume made it active and its renewals were charged.
"""

from __future__ import annotations

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.services import plan_store
from billing.services import subscriptions as service
from billing.services.customers import add_customer
from tests.conftest import NOW

CATALOG = "plans:\n  - {id: monthly, name: 월간, amount: 9900, interval: 1 month}\n"


def test_a_locked_read_sees_a_cancel_committed_after_this_session_read_the_row(app: App) -> None:
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "c.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "c", "x", NOW)
        add_customer(session, "cust-stale", NOW)
        sid = service.create_subscription(session, "cust-stale", "monthly", NOW, NOW).id
    with app.transaction() as operator:
        page = service.get_subscription(operator, sid)  # the operator's page, still held
        with app.transaction() as other:
            service.cancel(other, sid, NOW, NOW, at_period_end=False)  # commits meanwhile
        service.get_subscription(operator, sid)  # read again, unlocked
        assert service.get_subscription(operator, sid, lock=True).status == "canceled"
        assert page.status == "canceled"  # the one object the session holds, refreshed


def test_every_row_locked_through_the_orm_is_read_as_it_is_now(app: App) -> None:
    """Not only the lifecycle's lock: any SELECT ... FOR UPDATE of an object the session
    already holds re-reads it (the charge locks of the recording path, ``Session.get``)."""
    from sqlalchemy import update

    from billing.db.tables import Subscription
    from billing.services.locks import lock_subscriptions

    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "c.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "c", "x", NOW)
        add_customer(session, "cust-stale-2", NOW)
        sid = service.create_subscription(session, "cust-stale-2", "monthly", NOW, NOW).id
    for lock in ("get", "select"):
        with app.transaction() as reader:
            held = reader.get(Subscription, sid)
            assert held is not None
            before = held.status
            with app.transaction() as other:
                after = "paused" if before != "paused" else "active"
                other.execute(
                    update(Subscription).where(Subscription.id == sid).values(status=after)
                )
            if lock == "select":
                lock_subscriptions(reader, [sid])
            else:
                reader.get(Subscription, sid, with_for_update=True)
            assert held.status == after, lock
