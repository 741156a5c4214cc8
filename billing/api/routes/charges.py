"""Charges (read) and their refunds (``POST /v1/charges/{id}/refunds``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from billing.api.auth import Context, Reader
from billing.api.idempotency import Answer, PostWrite
from billing.api.models import Charge, ChargeList, Refund, RefundIn
from billing.api.routes import LIMIT_DEFAULT, After, Id, Limit, errors
from billing.db.tables import MAX_ID
from billing.db.tables import Refund as RefundRow
from billing.domain.charges import ChargeStatus
from billing.services.listing import get_charge, page_charges
from billing.services.refunds import RefundRunner
from billing.views import charge_view, show_refund

SubscriptionFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def list_charges(
    context: Context,
    _caller: Reader,
    subscription_id: SubscriptionFilter = None,
    status: ChargeStatus | None = None,
    limit: Limit = LIMIT_DEFAULT,
    starting_after: After = None,
) -> ChargeList:
    """Charges, newest first: one per attempt to charge a period."""
    with context.app.transaction() as session:
        page = page_charges(
            session, limit, starting_after, subscription_id=subscription_id, status=status
        )
    views = [charge_view(row, context.zone) for row in page.rows]
    return ChargeList.model_validate({"data": views, "has_more": page.has_more})


def show(charge_id: Id, context: Context, _caller: Reader) -> Charge:
    with context.app.transaction() as session:
        return Charge.model_validate(charge_view(get_charge(session, charge_id), context.zone))


def refund(charge_id: Id, body: RefundIn, write: PostWrite) -> Response:
    """Refund a paid charge in full, or ``amount`` KRW of it, through PortOne (201 with the
    refund: ``succeeded``, ``failed`` with ``fail_reason``, or ``unknown`` while PortOne's
    answer is being looked up). One refund of a charge at a time; never more than is left."""

    def produce() -> Answer:
        context = write.context
        refund_id = RefundRunner(context.app, context.portone()).refund(
            charge_id, body.amount, body.reason
        )
        with context.app.transaction() as session:
            row = session.get(RefundRow, refund_id)
            assert row is not None
            return Answer(201, Refund.model_validate(show_refund(session, row, context.zone)))

    return write.run(produce, body.reason)


def router() -> APIRouter:
    routes = APIRouter(tags=["charges"])
    routes.add_api_route("/charges", list_charges, methods=["GET"], responses=errors())
    routes.add_api_route("/charges/{charge_id}", show, methods=["GET"], responses=errors(404))
    routes.add_api_route(
        "/charges/{charge_id}/refunds",
        refund,
        methods=["POST"],
        status_code=201,
        response_model=Refund,
        responses=errors(400, 403, 404, 409, 502, 503),
    )
    return routes
