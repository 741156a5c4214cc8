"""The console's pages (GET): overview, queues, search, a subscription and its timeline, and
the way to a charge's receipt at PortOne. Each reads in one short transaction."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.db.api_tables import CustomerCard
from billing.db.tables import Customer, Subscription
from billing.domain.plans import Plan
from billing.errors import BillingError, ConfigError, Conflict, InvalidInput, NotFound
from billing.logs import log
from billing.services.charge_days import charges_per_day
from billing.services.listing import get_charge
from billing.services.plan_store import plan_version
from billing.services.queues import read_queues
from billing.services.search import MAX_ID, find_subscriptions
from billing.services.subscriptions import get_subscription
from billing.services.timeline import Timeline, subscription_timeline
from billing.web.metrics import read_figures
from billing.web.ops import chart
from billing.web.ops.console import Console
from billing.web.ops.receipts import NoReceipt, receipt_url

logger = logging.getLogger("billing.ops")
Page = Callable[[Console, Request], Response]
DONE = {
    "retried": "Retry asked: the scheduler charges it at its next pass.",
    "canceled": "Canceled: no further charges.",
    "cancel_scheduled": "Cancels at the end of the paid period: no renewal.",
    "paused": "Paused: no charges until resumed.",
    "resumed": "Resumed.",
    "refund_succeeded": "Refunded: PortOne confirmed the refund.",
    "refund_failed": "The refund failed: PortOne refused it (the timeline says why). "
    "No money moved.",
    "refund_unknown": "The refund was sent but PortOne's answer was not seen: it is being "
    "looked up (Queues, refunds in progress).",
    "refund_pending": "The refund is written and waits to be sent (Queues, refunds in progress).",
    "resent": "The notice is due again: the scheduler sends it at its next pass.",
}


@dataclass(frozen=True)
class SubscriptionPage:
    row: Subscription
    customer: Customer
    card: str | None
    plan: Plan
    timeline: Timeline

    @property
    def zone(self) -> ZoneInfo:
        return self.plan.zone


def status_of(exc: Exception) -> int:
    if isinstance(exc, NoReceipt):
        return 502
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, ConfigError):
        return 503
    return 400 if isinstance(exc, BillingError) else 503


def shown(console: Console, page: Page) -> Callable[[Request], Response]:
    """The page, or its error as a page: a one-line message, never a traceback."""

    def endpoint(request: Request) -> Response:  # sync: Starlette runs it on a thread
        try:
            return page(console, request)
        except BillingError as exc:
            return console.error(request, status_of(exc), exc.message)
        except SQLAlchemyError as exc:
            log(logger, "ops_database_error", str(exc).splitlines()[0], level=logging.WARNING)
            return console.error(request, 503, "the database is unavailable; try again")

    return endpoint


def overview(console: Console, request: Request) -> Response:
    figures = read_figures(console.web)
    now = console.app.clocks.billing.now()
    with console.app.transaction() as session:
        days = charges_per_day(session, now, console.zone)
    return console.page(request, "overview.html", figures=figures, chart=chart.draw(days), now=now)


def queues(console: Console, request: Request) -> Response:
    with console.app.transaction() as session:
        found = read_queues(session, console.app.clocks.system.now())
    return console.page(request, "queues.html", queues=found)


def search(console: Console, request: Request) -> Response:
    wanted = request.query_params.get("q", "")
    if not wanted.strip():
        return console.page(request, "search.html", matches=None)
    try:
        with console.app.transaction() as session:
            matches = find_subscriptions(session, wanted)
    except InvalidInput as exc:
        return console.page(
            request, "search.html", 400, matches=None, error=exc.message, query=wanted
        )
    if len(matches) == 1:
        return console.redirect(request, f"/subscriptions/{matches[0].subscription_id}")
    status = 200 if matches else 404
    return console.page(request, "search.html", status, matches=matches, query=wanted)


def subscription(console: Console, request: Request) -> Response:
    subscription_id = _id(request, "subscription_id")
    done = DONE.get(request.query_params.get("done", ""))
    return render_subscription(console, request, subscription_id, done=done)


def render_subscription(
    console: Console,
    request: Request,
    subscription_id: int,
    status: int = 200,
    done: str | None = None,
    error: str | None = None,
) -> Response:
    with console.app.transaction() as session:
        page = read_subscription(session, subscription_id)
    return console.page(request, "subscription.html", status, page=page, done=done, error=error)


def read_subscription(session: Session, subscription_id: int) -> SubscriptionPage:
    row = get_subscription(session, subscription_id)
    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    plan = plan_version(session, row.plan_id, row.plan_version)
    card = _card(session.get(CustomerCard, row.customer_id))
    timeline = subscription_timeline(session, row.id, plan.zone)
    return SubscriptionPage(row, customer, card, plan, timeline)


def _card(card: CustomerCard | None) -> str | None:
    """The card's issuer and last four digits: never more of the number."""
    if card is None or card.deleted_at is not None:
        return None
    last = re.search(r"([0-9]{4})$", card.card_number or "")
    ending = f"ending {last.group(1)}" if last else "number not shown"
    return f"{card.card_name or 'card'} {ending}"


def receipt(console: Console, request: Request) -> Response:
    """To the receipt PortOne keeps for the charge's payment (looked up each time)."""
    charge_id = _id(request, "charge_id")
    with console.app.transaction() as session:
        charge = get_charge(session, charge_id)
    if not charge.imp_uid:
        raise NotFound(f"charge {charge_id} was never paid at PortOne: it has no receipt")
    include_sandbox = console.web.settings.sandbox_mode
    exchange = console.api.portone().payment(charge.imp_uid, include_sandbox=include_sandbox)
    return Response(status_code=303, headers={"Location": receipt_url(exchange, charge.imp_uid)})


def _id(request: Request, name: str) -> int:
    value = int(request.path_params[name])
    if value > MAX_ID:
        raise NotFound(f"no {name.removesuffix('_id')} {value}")
    return value


def routes(console: Console) -> list[Route]:
    pages: list[tuple[str, Page]] = [
        ("/", overview),
        ("/queues", queues),
        ("/search", search),
        ("/subscriptions/{subscription_id:int}", subscription),
        ("/charges/{charge_id:int}/receipt", receipt),
    ]
    return [Route(path, shown(console, page), methods=["GET"]) for path, page in pages]
