"""The HTTP API over real HTTP: the web app under uvicorn on a free port (as in test_web),
the test's own PostgreSQL database, and the bundled PortOne sandbox over HTTP, where billing
keys exist only once issued (as after a real checkout)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billing.app import App, build_app
from billing.catalog_file import parse_catalog
from billing.clock import DatabaseClock
from billing.config import load_settings
from billing.db.tables import Charge, Event
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services import plan_store
from billing.services.api_keys import create_key
from billing.services.catalog_cache import CatalogCache
from billing.services.pipeline import Pipeline
from billing.services.scheduling import Scheduler
from billing.web import create_app
from tests.fakes import ListPublisher
from tests.integration.test_web import WebServer, free_socket

START = datetime(2027, 1, 30, 15, 30, tzinfo=UTC)  # 2027-01-31 00:30 in Seoul
CATALOG = """
plans:
  - {id: monthly, name: 월간, amount: 9900, interval: 1 month,
     dunning: {retry_after: [1d, 2d], final_action: cancel}}
  - {id: yearly, name: 연간, amount: 99000, interval: 1 year}
"""
CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2031-11", "birth": "871231"}


@dataclass
class Api:
    """The served API and what a test needs around it."""

    url: str
    app: App
    sandbox: SandboxServer
    env: dict[str, str]
    key: str  # read-write, named "shop"
    read_only_key: str  # named "reports"
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "",
        idem: str | None = None,
        **options: Any,
    ) -> httpx.Response:
        headers = dict(options.pop("headers", {}))
        given = self.key if key == "" else key
        if given is not None:
            headers["Authorization"] = f"Bearer {given}"
        if idem is not None:
            headers["Idempotency-Key"] = idem
        return self.http.request(method, self.url + path, headers=headers, **options)

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, body: Any = None, **options: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **options)

    def put(self, path: str, body: Any = None, **options: Any) -> httpx.Response:
        return self.request("PUT", path, json=body, **options)

    def delete(self, path: str, **options: Any) -> httpx.Response:
        return self.request("DELETE", path, **options)

    def issue_key_at_portone(self, uid: str) -> None:
        """What the page's IMP.request_pay does: PortOne issues the billing key."""
        client = PortOneClient(self.sandbox.url, "sandbox_key", "sandbox_secret")
        try:
            answer = client.call("POST", f"/subscribe/customers/{uid}", json=CARD)
        finally:
            client.close()
        assert answer.status == 200, answer

    def customer_with_key(self, uid: str) -> None:
        assert self.put(f"/v1/customers/{uid}", {"email": f"{uid}@example.com"}).status_code in (
            200,
            201,
        )
        self.issue_key_at_portone(uid)

    def subscribe(self, uid: str, plan: str = "monthly", **extra: Any) -> dict[str, Any]:
        answer = self.post("/v1/subscriptions", {"customer_uid": uid, "plan_id": plan, **extra})
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def charge_due(self) -> None:
        """One scheduler pass, and the worker's job done in this process, at the sandbox."""
        publisher, plans = ListPublisher(), CatalogCache()
        Scheduler(self.app, publisher, plans).run_pass()
        client = PortOneClient(self.sandbox.url, "sandbox_key", "sandbox_secret")
        try:
            pipeline = Pipeline(self.app, PortOneGateway(client), publisher, plans)
            for charge_id in publisher.take()[0]:
                pipeline.charge(charge_id)
        finally:
            client.close()

    def charges(self) -> list[Charge]:
        with self.app.transaction() as session:
            return list(session.scalars(select(Charge).order_by(Charge.id)))

    def events(self, kind: str) -> list[Event]:
        with self.app.transaction() as session:
            query = select(Event).where(Event.kind == kind).order_by(Event.id)
            return list(session.scalars(query))


def api_environment(db_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        "BILLING_DATABASE_URL": db_url,
        "BILLING_PORTONE_URL": sandbox_url,
        "BILLING_SANDBOX": "1",
        "BILLING_PORTONE_SITE_CODE": "A52CY",
        "BILLING_CHECKOUT_REDIRECT_URL": "https://merchant.example/billing/return",
        "BILLING_PORTONE_TIMEOUT": "5",
        "BILLING_RECONCILE_AFTER": "300",
    }


@pytest.fixture
def api_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(port=0, auto_register=False, hang_seconds=8))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(db_url: str, api_sandbox: SandboxServer) -> Iterator[Api]:
    env = api_environment(db_url, api_sandbox.url)
    settings = load_settings(env)
    app = build_app(settings)
    assert isinstance(app.clocks.billing, DatabaseClock)
    app.clocks.billing.set(START)
    with app.transaction() as session:
        parsed = parse_catalog(CATALOG, "t.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "t.yaml", "x", START)
        key = create_key(session, "shop", False, datetime.now(UTC)).key
        read_only = create_key(session, "reports", True, datetime.now(UTC)).key
    web = WebServer(free_socket()).start(create_app(settings))
    served = Api(web.url, app, api_sandbox, env, key, read_only)
    yield served
    served.http.close()
    web.stop()
    app.close()
