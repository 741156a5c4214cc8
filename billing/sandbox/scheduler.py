"""PortOne's hosted scheduler: ``POST /subscribe/payments/schedule`` and ``unschedule``, the
schedule lookups, and the firing of due schedules on the sandbox's clock.

A due schedule is charged through ``again``'s own path (``charging.execute``: the script,
the faults, the declines, the ledger and the notices), oldest first, once: ``fire_due`` holds
the book's lock from taking the due schedules to recording their outcomes. It runs when the
clock control moves the clock, before every request, and once a second from the server.
"""

from __future__ import annotations

from billing.sandbox import charging, fields
from billing.sandbox.cards import CardRefused
from billing.sandbox.customers import BillingKey, Contact
from billing.sandbox.ledger import ChargeOrder, Payment, PaymentStatus
from billing.sandbox.protocol import (
    InvalidRequest,
    JSONObject,
    Reply,
    Request,
    not_found,
    ok,
    refusal,
    schedule_json,
)
from billing.sandbox.schedules import DuplicateSchedule, Outcome, Schedule
from billing.sandbox.state import SandboxState

NOTHING_TO_REVOKE = "취소할 예약결제 기록이 존재하지 않습니다."
NO_SUCH_SCHEDULE = "존재하지 않는 결제예약입니다"
CUSTOMER_PAGE = 20


# -- firing -------------------------------------------------------------------------------------


def fire_due(state: SandboxState) -> list[Schedule]:
    """Charge every ``scheduled`` schedule whose time has come, oldest first; answers them."""
    due_at = state.schedules.next_due_at()
    if due_at is None or due_at > state.now():
        return []
    with state.schedules.lock:
        return [_fire(state, schedule) for schedule in state.schedules.take_due(state.now())]


def _fire(state: SandboxState, schedule: Schedule) -> Schedule:
    state.counters.request("hosted schedule fired")
    before = len(state.ledger.for_merchant_uid(schedule.merchant_uid))
    try:
        reply = charging.execute(state, schedule.order, delays=False)
    except Exception:  # a schedule that cannot be charged is failed, never stuck
        reply = refusal(charging.SERVER_ERROR, 500)
    attempts = state.ledger.for_merchant_uid(schedule.merchant_uid)
    payment = attempts[-1] if len(attempts) > before else None
    outcome = _outcome(payment, reply)
    if payment is not None and payment.status is PaymentStatus.FAILED:
        charging.notify(state, payment, schedule.order.notice_url)  # PortOne notices failures
    return state.schedules.execute(schedule.merchant_uid, outcome, state.now())


def _outcome(payment: Payment | None, reply: Reply) -> Outcome:
    """The recorded payment's status, or a failure with the refusal's message."""
    if payment is not None:
        return Outcome(payment.status.value, payment.imp_uid, payment.fail_reason)
    message = reply.body.get("message")
    return Outcome(PaymentStatus.FAILED.value, None, str(message or "결제에 실패했습니다"))


# -- endpoints ----------------------------------------------------------------------------------


def schedule(state: SandboxState, request: Request) -> Reply:
    """``POST /subscribe/payments/schedule``: schedule charges of the customer's key (issued
    first from the card fields when given); all or nothing."""
    customer_uid = fields.required_text(request.fields, "customer_uid", fields.CUSTOMER_UID_MAX)
    entries = fields.schedule_entries(request.fields)
    checked = [fields.schedule_order(entry, customer_uid, Contact()) for entry in entries]
    refused = _refused(state, checked)  # before a key is issued from the card fields
    if refused is not None:
        return refused
    key = _key(state, customer_uid, request.fields)
    if isinstance(key, Reply):
        return key
    orders = [fields.schedule_order(entry, customer_uid, key.contact) for entry in entries]
    try:
        added = state.schedules.add(orders)
    except DuplicateSchedule as exc:
        return refusal(f"이미 예약된 merchant_uid입니다 ({exc.merchant_uid})")
    return ok([_json(state, one) for one in added])


def _key(state: SandboxState, customer_uid: str, given: fields.Fields) -> BillingKey | Reply:
    """The key to charge: issued from the card fields when given, else the customer's."""
    if fields.text(given, "card_number"):
        try:
            card, contact = fields.registration(given, state.today())
        except CardRefused as exc:
            return refusal(str(exc))
        return state.keys.register(customer_uid, card, contact, state.now())
    key = state.keys.find(customer_uid, state.now())
    return charging.unknown_customer(customer_uid) if key is None else key


def _refused(state: SandboxState, orders: list[tuple[ChargeOrder, int]]) -> Reply | None:
    """A schedule in the past, or for a merchant_uid that was paid already."""
    now = state.now()
    for order, schedule_at in orders:
        if schedule_at < now:
            return refusal(
                f"예약시각이 현재 시각보다 과거입니다 ({order.merchant_uid}: {schedule_at} < {now})"
            )
        paid = [p for p in state.ledger.for_merchant_uid(order.merchant_uid) if p.moved_money]
        if paid:
            return charging.already_paid(paid[0])
    return None


def unschedule(state: SandboxState, request: Request) -> Reply:
    """``POST /subscribe/payments/unschedule``: revoke the customer's ``scheduled`` schedules
    (those of ``merchant_uid[]`` when given); code 1 when there is nothing to revoke."""
    customer_uid = fields.text(request.fields, "customer_uid", fields.CUSTOMER_UID_MAX)
    merchant_uids = fields.merchant_uids(request.fields)
    if not customer_uid and not merchant_uids:
        raise InvalidRequest("customer_uid or merchant_uid: one of them is required")
    revoked = state.schedules.revoke(customer_uid, merchant_uids, state.now())
    if not revoked:
        return Reply(200, {"code": 1, "message": NOTHING_TO_REVOKE, "response": None})
    return ok([_json(state, one) for one in revoked])


def get_one(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/payments/schedule/{merchant_uid}``."""
    found = state.schedules.get(request.params["merchant_uid"])
    return not_found(NO_SUCH_SCHEDULE) if found is None else ok(_json(state, found))


def by_range(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/payments/schedule?schedule_from=&schedule_to=``: one page of the
    schedules in the window, newest first (``sorting=scheduled``: oldest first)."""
    query = request.query
    since, until = fields.schedule_window(query, "schedule_from", "schedule_to")
    status = fields.schedule_status(query, "schedule_status")
    oldest_first = fields.schedule_sorting(query)
    page, limit = fields.paging(query)
    chosen = state.schedules.between(since, until, status)
    return ok(_page(state, chosen, page, limit, oldest_first))


def by_customer(state: SandboxState, request: Request) -> Reply:
    """``GET /subscribe/payments/schedule/customers/{customer_uid}?from=&to=`` (and
    ``/subscribe/customers/{customer_uid}/schedules``): the customer's, newest first."""
    query = request.query
    customer_uid = fields.customer_uid(request.params["customer_uid"])
    since, until = fields.schedule_window(query, "from", "to")
    status = fields.schedule_status(query, "schedule-status", "schedule_status")
    page = fields.page(query)
    limit = fields.whole_number(query, "limit") or CUSTOMER_PAGE
    page, limit = fields.paging({"page": page, "limit": limit})
    chosen = state.schedules.between(since, until, status, customer_uid)
    return ok(_page(state, chosen, page, limit, oldest_first=False))


def _page(
    state: SandboxState, chosen: list[Schedule], page: int, limit: int, oldest_first: bool
) -> list[JSONObject]:
    """One page of ``chosen`` by schedule_at (the document's answer is a plain array)."""
    ordered = sorted(chosen, key=lambda s: (s.schedule_at, s.seq), reverse=not oldest_first)
    start = (page - 1) * limit
    return [_json(state, one) for one in ordered[start : start + limit]]


def _json(state: SandboxState, one: Schedule) -> JSONObject:
    payment = state.ledger.get(one.imp_uid) if one.imp_uid else None
    return schedule_json(one, payment)
