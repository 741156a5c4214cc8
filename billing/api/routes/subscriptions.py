"""Subscriptions: create, read, the lifecycle actions (as the CLI's), and the history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy.orm import Session

from billing.api.auth import Context, Reader
from billing.api.idempotency import Answer, PostWrite, Write
from billing.api.models import (
    CancelIn,
    CardIn,
    ChangePlanIn,
    EventList,
    ReasonIn,
    Subscription,
    SubscriptionIn,
    SubscriptionList,
)
from billing.api.routes import LIMIT_DEFAULT, After, Id, Limit, errors
from billing.db.tables import Subscription as SubscriptionRow
from billing.domain.statuses import SubscriptionStatus
from billing.errors import InvalidInput
from billing.services import subscriptions as service
from billing.services.billing_keys import parse_card, today_in
from billing.services.first_payment import subscribe_and_pay
from billing.services.listing import page_events, page_subscriptions
from billing.services.subscribing import subscribe
from billing.views import event_view, show_subscription, subscription_zone

CARD_FIELDS = {  # the CLI's option names in the services' messages
    "--card-number": "card.number",
    "--expiry": "card.expiry",
    "--birth": "card.birth",
    "--pwd-2digit": "card.pwd_2digit",
}
Change = Callable[[Session, int, datetime, datetime], SubscriptionRow]  # now, wall


def _answer(session: Session, row: SubscriptionRow, status: int = 200) -> Answer:
    return Answer(status, Subscription.model_validate(show_subscription(session, row)))


def create(body: SubscriptionIn, write: PostWrite) -> Response:
    """Subscribe a customer to a plan (201); the first charge follows the plan's calendar.
    With ``card``, the first period is paid now with it in one PortOne ``onetime`` call that
    also issues the billing key (422 ``card_declined`` when declined; the subscription is
    then canceled)."""

    def produce() -> Answer:
        app = write.context.app
        if body.card is not None:
            return _subscribe_with_card(write, body, body.card)
        now = app.clocks.billing.now()
        with app.transaction() as session:
            row = subscribe(
                session,
                write.context.settings,
                body.customer_uid,
                body.plan_id,
                body.start,
                now,
                start_field="start",
            )
            return _answer(session, row, 201)

    return write.run(produce)


def _subscribe_with_card(write: Write, body: SubscriptionIn, given: CardIn) -> Answer:
    context = write.context
    try:
        today = today_in(context.zone, context.app.clocks.system.now())
        card = parse_card(given.number, given.expiry, given.birth, given.pwd_2digit, today)
    except InvalidInput as exc:
        message = exc.message
        for option, name in CARD_FIELDS.items():
            message = message.replace(option, name)
        raise InvalidInput(message) from None
    paid = subscribe_and_pay(
        context.app,
        context.portone(),
        body.customer_uid,
        body.plan_id,
        body.start,
        card,
        start_field="start",
    )
    with context.app.transaction() as session:
        row = service.get_subscription(session, paid.subscription_id)
        return _answer(session, row, 201)


def list_subscriptions(
    context: Context,
    _caller: Reader,
    status: SubscriptionStatus | None = None,
    customer_uid: Annotated[str | None, Query(max_length=80)] = None,
    limit: Limit = LIMIT_DEFAULT,
    starting_after: After = None,
) -> SubscriptionList:
    """Subscriptions, newest first."""
    with context.app.transaction() as session:
        page = page_subscriptions(
            session, limit, starting_after, status=status, customer_uid=customer_uid
        )
        views = [show_subscription(session, row) for row in page.rows]
    return SubscriptionList.model_validate({"data": views, "has_more": page.has_more})


def show(subscription_id: Id, context: Context, _caller: Reader) -> Subscription:
    with context.app.transaction() as session:
        row = service.get_subscription(session, subscription_id)
        return Subscription.model_validate(show_subscription(session, row))


def events(
    subscription_id: Id,
    context: Context,
    _caller: Reader,
    limit: Limit = LIMIT_DEFAULT,
    starting_after: After = None,
) -> EventList:
    """The append-only history, newest first: every change, attempt and notice, with who
    asked for it (``data.actor``) and why (``data.reason``)."""
    with context.app.transaction() as session:
        page = page_events(session, subscription_id, limit, starting_after)
        zone = subscription_zone(session, service.get_subscription(session, subscription_id))
        views = [event_view(event, zone) for event in page.rows]
    return EventList.model_validate({"data": views, "has_more": page.has_more})


def _act(write: Write, subscription_id: int, change: Change, reason: str | None) -> Response:
    def produce() -> Answer:
        app = write.context.app
        now, wall = app.clocks.billing.now(), app.clocks.system.now()
        with app.transaction() as session:
            return _answer(session, change(session, subscription_id, now, wall))

    return write.run(produce, reason)


def cancel(
    subscription_id: Id, write: PostWrite, body: Annotated[CancelIn | None, Body()] = None
) -> Response:
    """Cancel now (no further charges), or at the end of the paid period."""
    given = body or CancelIn()
    return _act(
        write,
        subscription_id,
        lambda s, i, now, wall: service.cancel(s, i, now, wall, given.at_period_end),
        given.reason,
    )


def pause(
    subscription_id: Id, write: PostWrite, body: Annotated[ReasonIn | None, Body()] = None
) -> Response:
    """Pause: no charges until resumed."""
    return _act(write, subscription_id, service.pause, body.reason if body else None)


def resume(
    subscription_id: Id, write: PostWrite, body: Annotated[ReasonIn | None, Body()] = None
) -> Response:
    """Resume: charged at once and re-anchored to now (inside a paid period: on schedule)."""
    return _act(write, subscription_id, _resume, body.reason if body else None)


def change_plan(subscription_id: Id, write: PostWrite, body: ChangePlanIn) -> Response:
    """Move to another plan from the next period."""
    return _act(
        write,
        subscription_id,
        lambda s, i, now, _: service.change_plan(s, i, body.plan_id, now),
        body.reason,
    )


def _resume(session: Session, subscription_id: int, now: datetime, _: datetime) -> SubscriptionRow:
    return service.resume(session, subscription_id, now)


def router() -> APIRouter:
    routes = APIRouter(tags=["subscriptions"])
    write = errors(400, 403, 404, 409)
    routes.add_api_route(
        "/subscriptions",
        create,
        methods=["POST"],
        status_code=201,
        response_model=Subscription,
        responses=errors(400, 403, 404, 409, 503),
    )
    routes.add_api_route("/subscriptions", list_subscriptions, methods=["GET"], responses=errors())
    routes.add_api_route(
        "/subscriptions/{subscription_id}", show, methods=["GET"], responses=errors(404)
    )
    routes.add_api_route(
        "/subscriptions/{subscription_id}/events", events, methods=["GET"], responses=errors(404)
    )
    for name, action in (
        ("cancel", cancel),
        ("pause", pause),
        ("resume", resume),
        ("change-plan", change_plan),
    ):
        path = f"/subscriptions/{{subscription_id}}/{name}"
        routes.add_api_route(
            path, action, methods=["POST"], response_model=Subscription, responses=write
        )
    return routes
