"""A world for service tests: real PostgreSQL, an in-memory PortOne and broker, a movable
billing clock, and the real scheduler, pipeline and notice delivery."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.clock import Clocks, FixedClock
from billing.db.tables import Charge, Event, Notice, Subscription
from billing.portone.gateway import PortOneGateway
from billing.services import plan_store
from billing.services.catalog_cache import CatalogCache
from billing.services.customers import add_customer, find_customer
from billing.services.pipeline import Pipeline
from billing.services.scheduling import Scheduler
from billing.services.subscriptions import create_subscription
from tests.fakes import FakeGateway, ListPublisher

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)  # 2027-01-31 00:30 in Seoul
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month, dunning: {retry_after: [1d, 3d], final_action: cancel}}
"""


class World:
    """One database, a fake PortOne, a list broker, a movable clock, and the real services."""

    def __init__(self, app: App, catalog_text: str = CATALOG) -> None:
        self.app = app
        self.clock = FixedClock(START)
        self.system = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
        app.clocks = Clocks(self.clock, self.system)
        self.gateway = FakeGateway()
        self.publisher = ListPublisher()
        plans = CatalogCache()
        self.scheduler = Scheduler(app, self.publisher, plans)
        self.pipeline = Pipeline(app, PortOneGateway(self.gateway), self.publisher, plans)
        with app.transaction() as session:
            parsed = parse_catalog(catalog_text, "c.yaml", "Asia/Seoul")
            plan_store.load_catalog(session, parsed, "c.yaml", "sha", START)

    @property
    def wall(self) -> datetime:
        """The system clock's reading (PortOne's time, leases, timers)."""
        return self.system.moment

    @wall.setter
    def wall(self, moment: datetime) -> None:
        self.system.moment = moment

    def subscribe(self, uid: str = "cust-1", start: datetime = START, plan: str = "monthly") -> int:
        with self.app.transaction() as session:
            if find_customer(session, uid) is None:
                add_customer(session, uid, start, email=f"{uid}@example.com")
            return create_subscription(session, uid, plan, start, start).id

    def run_queue(self, rounds: int = 10) -> None:
        """Deliver published messages like a worker would, ignoring countdowns; a message
        that keeps coming back (a lookup that finds nothing yet) stops after ``rounds``."""
        for _ in range(rounds):
            charges, reconciles = self.publisher.take()
            if not charges and not reconciles:
                return
            for charge_id in charges:
                self.pipeline.charge(charge_id)
            for charge_id in reconciles:
                self.pipeline.reconcile(charge_id)
        self.publisher.notices.clear()

    def cycle(self) -> None:
        self.scheduler.run_pass()
        self.run_queue()

    def charges(self, subscription_id: int | None = None) -> list[Charge]:
        with self.app.transaction() as session:
            query = select(Charge).order_by(Charge.id)
            if subscription_id is not None:
                query = query.where(Charge.subscription_id == subscription_id)
            return list(session.scalars(query))

    def subscription(self, subscription_id: int) -> Subscription:
        with self.app.transaction() as session:
            row = session.get(Subscription, subscription_id)
            assert row is not None
            return row

    def events(self, subscription_id: int) -> list[str]:
        with self.app.transaction() as session:
            query = (
                select(Event.kind)
                .where(Event.subscription_id == subscription_id)
                .order_by(Event.id)
            )
            return list(session.scalars(query))

    def notices(self, subscription_id: int | None = None) -> list[Notice]:
        with self.app.transaction() as session:
            query = select(Notice).order_by(Notice.id)
            if subscription_id is not None:
                query = query.where(Notice.subscription_id == subscription_id)
            return list(session.scalars(query))
