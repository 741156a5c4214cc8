"""``GET /v1/checkout-params``: what the merchant's page passes to ``IMP.request_pay``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from billing.api.auth import Context, Reader
from billing.api.models import CheckoutParams
from billing.api.routes import errors
from billing.services.checkout import checkout_params


def params(
    context: Context,
    _caller: Reader,
    customer_uid: Annotated[str, Query(max_length=80)],
    plan_id: Annotated[str, Query(max_length=64)],
) -> CheckoutParams:
    """Parameters that issue a billing key named ``customer_uid`` for ``plan_id`` (amount 0;
    needs BILLING_PORTONE_SITE_CODE). The customer need not exist yet."""
    app = context.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        found = checkout_params(session, context.settings, customer_uid, plan_id, now)
    return CheckoutParams.model_validate(found)


def router() -> APIRouter:
    routes = APIRouter(tags=["checkout"])
    routes.add_api_route("/checkout-params", params, methods=["GET"], responses=errors(404, 503))
    return routes
