"""The lookups of several things at once: ``GET /payments?imp_uid[]=&merchant_uid[]=``,
``GET /subscribe/customers?customer_uid[]=`` and a billing key's payments,
``GET /subscribe/customers/{customer_uid}/payments``.

The two multiple lookups answer as PortOne's document says: 200 when every id was found, 207
with what was found when only some were, 404 when none was.
"""

from __future__ import annotations

from collections.abc import Sequence

from billing.sandbox import fields
from billing.sandbox.ledger import Payment
from billing.sandbox.protocol import (
    InvalidRequest,
    JSONObject,
    Reply,
    Request,
    customer_json,
    not_found,
    ok,
    page_json,
    payment_json,
)
from billing.sandbox.state import SandboxState

MULTIPLE_MAX = 100  # "최대 100개"
CUSTOMER_PAGE = 20  # a billing key's payments, 20 a page, newest first
PARTIAL = 207


def payments(state: SandboxState, request: Request) -> Reply:
    """``GET /payments``: the payments of the given imp_uids and merchant_uids."""
    imp_uids = _ids(request, "imp_uid[]")
    merchant_uids = _ids(request, "merchant_uid[]")
    if not imp_uids and not merchant_uids:
        raise InvalidRequest("imp_uid[] or merchant_uid[]: at least one is required")
    _bounded(len(imp_uids) + len(merchant_uids))
    found: list[JSONObject] = []
    missing = 0
    for imp_uid in imp_uids:
        payment = state.ledger.get(imp_uid)
        missing += payment is None
        found += [] if payment is None else [payment_json(payment)]
    for merchant_uid in merchant_uids:
        attempts = state.ledger.for_merchant_uid(merchant_uid)
        missing += not attempts
        found += [payment_json(payment) for payment in attempts]
    return _several(found, missing, "존재하지 않는 결제정보입니다")


def customers(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/customers``: the billing keys of the given customer_uids."""
    uids = [fields.customer_uid(uid) for uid in _ids(request, "customer_uid[]")]
    if not uids:
        raise InvalidRequest("customer_uid[]: required")
    _bounded(len(uids))
    now = state.now()
    keys = [state.keys.find(uid, now) for uid in uids]
    found: list[JSONObject] = [customer_json(key) for key in keys if key is not None]
    return _several(found, len(uids) - len(found), "유효하지 않은 customer_uid입니다")


def customer_payments(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/customers/{customer_uid}/payments?page=``: what the key paid or tried,
    newest first, 20 a page; 404 for a customer_uid with neither a key nor a payment."""
    uid = fields.customer_uid(request.params["customer_uid"])
    page = fields.page(request.query)
    charged: Sequence[Payment] = [p for p in state.ledger.all() if p.order.customer_uid == uid]
    if not charged and state.keys.find(uid, state.now()) is None:
        return not_found(f"유효하지 않은 customer_uid입니다 ({uid})")
    newest = sorted(charged, key=lambda p: (p.started_at, p.seq), reverse=True)
    return ok(page_json(newest, page, CUSTOMER_PAGE))


def _ids(request: Request, name: str) -> list[str]:
    """The values of a repeated query parameter (``name`` with its ``[]``, or without)."""
    given = [*request.lists.get(name, ()), *request.lists.get(name.removesuffix("[]"), ())]
    if any(not value for value in given):
        raise InvalidRequest(f"{name}: an empty value")
    return list(dict.fromkeys(given))


def _bounded(count: int) -> None:
    if count > MULTIPLE_MAX:
        raise InvalidRequest(f"at most {MULTIPLE_MAX} ids in one lookup (got {count})")


def _several(found: list[JSONObject], missing: int, nothing: str) -> Reply:
    if not found:
        return not_found(nothing)
    reply = ok(found)
    return Reply(PARTIAL, reply.body) if missing else reply
