"""The PortOne V1 endpoints other than ``again``: tokens, lookups, billing keys and cancels.

Each is a function ``(state, request) -> Reply``; routing, authentication and latency are
the router's business.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from billing.sandbox import fields
from billing.sandbox.cards import CardRefused
from billing.sandbox.charging import notify
from billing.sandbox.ledger import CancelRefused, Payment, PaymentStatus
from billing.sandbox.protocol import (
    Reply,
    Request,
    customer_json,
    not_found,
    ok,
    page_json,
    payment_json,
    refusal,
)
from billing.sandbox.state import SandboxState

SORT_KEYS: dict[str, Callable[[Payment], tuple[int, int]]] = {
    "started": lambda p: (p.started_at, p.seq),
    "paid": lambda p: (p.paid_at, p.seq),
    "updated": lambda p: (p.updated_at, p.seq),
}


def get_token(state: SandboxState, request: Request) -> Reply:
    """``POST /users/getToken``: the current token, or a new one after expiry."""
    key = request.fields.get("imp_key")
    secret = request.fields.get("imp_secret")
    if not (_same(key, state.config.imp_key) and _same(secret, state.config.imp_secret)):
        return refusal("imp_key, imp_secret 인증에 실패하였습니다 (invalid credentials)", 401)
    issued = state.tokens.issue()
    return ok(
        {"access_token": issued.access_token, "now": issued.now, "expired_at": issued.expired_at}
    )


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def find(state: SandboxState, request: Request) -> Reply:
    """``GET /payments/find/{merchant_uid}[/{payment_status}]``: the first by ``sorting``."""
    matches = _matches(state, request)
    if not matches:
        return not_found("존재하지 않는 결제정보입니다")
    return ok(payment_json(matches[0]))


def find_all(state: SandboxState, request: Request) -> Reply:
    """``GET /payments/findAll/{merchant_uid}[/{payment_status}]``: one page of attempts."""
    page, limit = fields.paging(request.query)
    matches = _matches(state, request)
    if not matches:
        return not_found("존재하지 않는 결제정보입니다")
    return ok(page_json(matches, page, limit))


def _matches(state: SandboxState, request: Request) -> list[Payment]:
    """The merchant_uid's attempts with the asked status, in the asked order."""
    status = fields.payment_status(request.params.get("payment_status"))
    sorting = fields.sorting(request.query)
    payments = state.ledger.for_merchant_uid(request.params["merchant_uid"])
    chosen = [p for p in payments if status is None or p.status is status]
    return sorted(chosen, key=SORT_KEYS[sorting.lstrip("-")], reverse=sorting.startswith("-"))


def by_status(state: SandboxState, request: Request) -> Reply:
    """``GET /payments/status/{payment_status}``: payments by status, paged, in a time window
    (``from`` <= t <= ``to``, unix seconds; 90 days before ``to`` by default), ``t`` being the
    time of the status the payment ended in (started for ready, paid, cancelled, failed)."""
    wanted = request.params["payment_status"]
    status = None if wanted == "all" else fields.payment_status(wanted)
    page, limit = fields.paging(request.query)
    until = fields.whole_number(request.query, "to")
    until = int(state.now()) if until is None else until
    since = fields.whole_number(request.query, "from")
    since = until - WINDOW_DEFAULT if since is None else since
    sorting = fields.sorting(request.query)
    chosen = [
        p
        for p in state.ledger.all()
        if (status is None or p.status is status) and since <= _status_time(p) <= until
    ]
    chosen.sort(key=SORT_KEYS[sorting.lstrip("-")], reverse=sorting.startswith("-"))
    return ok(page_json(chosen, page, limit))


WINDOW_DEFAULT = 90 * 86400


def _status_time(payment: Payment) -> int:
    """When the payment reached the status it has now (PortOne's search criterion)."""
    if payment.status is PaymentStatus.CANCELLED and payment.cancel_history:
        return payment.cancelled_at
    return payment.started_at


def payment(state: SandboxState, request: Request) -> Reply:
    """``GET /payments/{imp_uid}`` (``include_sandbox`` is accepted and changes nothing)."""
    found = state.ledger.get(request.params["imp_uid"])
    if found is None:
        return not_found("존재하지 않는 결제정보입니다")
    return ok(payment_json(found))


def customer_get(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/customers/{customer_uid}``."""
    key = state.keys.find(fields.customer_uid(request.params["customer_uid"]), state.now())
    if key is None:
        return not_found("등록된 빌링키 정보가 존재하지 않습니다")
    return ok(customer_json(key))


def customer_post(state: SandboxState, request: Request) -> Reply:
    """``POST /subscribe/customers/{customer_uid}``: issue a billing key (masked card only)."""
    customer_uid = fields.customer_uid(request.params["customer_uid"])
    try:
        card, contact = fields.registration(request.fields, state.today())
    except CardRefused as exc:
        return refusal(str(exc))
    return ok(customer_json(state.keys.register(customer_uid, card, contact, state.now())))


def customer_delete(state: SandboxState, request: Request) -> Reply:
    """``DELETE /subscribe/customers/{customer_uid}``: later charges answer unknown customer."""
    key = state.keys.delete(fields.customer_uid(request.params["customer_uid"]), state.now())
    if key is None:
        return not_found("등록된 빌링키 정보가 존재하지 않습니다")
    return ok(customer_json(key))


def cancel(state: SandboxState, request: Request) -> Reply:
    """``POST /payments/cancel``: refund all or part of what is left of a paid payment."""
    imp_uid, merchant_uid, terms = fields.cancel_terms(request.fields)
    try:
        cancelled = state.ledger.cancel(imp_uid, merchant_uid, terms, state.now())
    except CancelRefused as exc:
        return refusal(str(exc))
    notify(state, cancelled)
    return ok(payment_json(cancelled))
