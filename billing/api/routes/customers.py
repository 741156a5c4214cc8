"""Customers and their billing keys: ``PUT``/``GET /v1/customers/{customer_uid}``, the
checkout callback's ``POST .../billing-key/verify`` and ``DELETE .../billing-key``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from billing.api.auth import Context, Reader
from billing.api.context import ApiContext
from billing.api.idempotency import Answer, OtherWrite, PostWrite
from billing.api.models import BillingKeyDeleted, BillingKeyVerified, Customer, CustomerIn, Reason
from billing.api.routes import errors
from billing.db.tables import Customer as CustomerRow
from billing.services import billing_keys
from billing.services.customers import CUSTOMER_UID, get_customer, save_customer
from billing.views import card_view, customer_view

CustomerUid = Annotated[
    str,
    Path(
        pattern=CUSTOMER_UID.pattern,
        description="PortOne's name of the billing key: 1-80 of letters, digits and _ . : @ + = -",
    ),
]


def customer_answer(session: Session, context: ApiContext, row: CustomerRow) -> Customer:
    view: dict[str, Any] = customer_view(row, context.zone)
    view["billing_key"] = card_view(billing_keys.card_of(session, row), context.zone)
    return Customer.model_validate(view)


def put_customer(customer_uid: CustomerUid, body: CustomerIn, write: OtherWrite) -> Response:
    """Create the customer, or replace its name, e-mail and phone (201 created, 200 updated)."""

    def produce() -> Answer:
        app = write.context.app
        now = app.clocks.billing.now()
        with app.transaction() as session:
            row, created = save_customer(
                session, customer_uid, now, name=body.name, email=body.email, phone=body.phone
            )
            return Answer(201 if created else 200, customer_answer(session, write.context, row))

    return write.run(produce)


def show_customer(customer_uid: CustomerUid, context: Context, _caller: Reader) -> Customer:
    """The customer, with the masked card of its billing key when PortOne showed us one."""
    with context.app.transaction() as session:
        return customer_answer(session, context, get_customer(session, customer_uid))


def verify_key(customer_uid: CustomerUid, write: PostWrite) -> Response:
    """After the checkout callback: asks PortOne (``GET /subscribe/customers/{customer_uid}``)
    whether the key exists; retries the customer's past-due subscriptions at once."""

    def produce() -> Answer:
        verified = billing_keys.verify_key(write.context.app, write.context.portone(), customer_uid)
        return Answer(200, BillingKeyVerified.model_validate(verified.view()))

    return write.run(produce)


def delete_key(
    customer_uid: CustomerUid,
    write: OtherWrite,
    force: Annotated[bool, Query(description="Even while live subscriptions need it.")] = False,
    reason: Annotated[Reason | None, Query()] = None,
) -> Response:
    """Deletes the billing key at PortOne (409 while a live subscription needs it)."""

    def produce() -> Answer:
        result = billing_keys.delete_key(
            write.context.app, write.context.portone(), customer_uid, reason, force=force
        )
        return Answer(200, BillingKeyDeleted.model_validate(result.view()))

    return write.run(produce, reason)


def router() -> APIRouter:
    routes = APIRouter(tags=["customers"])
    path = "/customers/{customer_uid}"
    routes.add_api_route(
        path,
        put_customer,
        methods=["PUT"],
        response_model=Customer,
        responses={201: {"model": Customer, "description": "Created"}, **errors(400, 403)},
    )
    routes.add_api_route(path, show_customer, methods=["GET"], responses=errors(404))
    routes.add_api_route(
        f"{path}/billing-key/verify",
        verify_key,
        methods=["POST"],
        response_model=BillingKeyVerified,
        responses=errors(403, 404, 409, 502, 503),
    )
    routes.add_api_route(
        f"{path}/billing-key",
        delete_key,
        methods=["DELETE"],
        response_model=BillingKeyDeleted,
        responses=errors(403, 404, 409, 502, 503),
    )
    return routes
