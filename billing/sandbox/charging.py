"""``POST /subscribe/payments/again`` (one charge of a billing key) and
``POST /subscribe/payments/onetime`` (a key-in payment that can issue the key), as the script
decides.

The order of things: validate (400), take the next behavior (queue, fault die, defaults),
wait its latency, answer the faults that happen before processing (500, 401, refusal, unknown
customer), then record the payment under the merchant_uid guard and deliver the answer
(answer, hold the connection, or reset it).
"""

from __future__ import annotations

from collections.abc import Callable

from billing.sandbox import fields
from billing.sandbox.behaviors import (
    DEFAULT_DECLINE_REASON,
    DEFAULT_REFUSE_MESSAGE,
    Behavior,
    BehaviorKind,
    Decision,
)
from billing.sandbox.cards import CardFace, CardRefused
from billing.sandbox.ledger import AlreadyPaid, CancelTerms, ChargeOrder, Payment, PaymentStatus
from billing.sandbox.protocol import (
    Delivery,
    Reply,
    Request,
    ok,
    payment_json,
    refusal,
    unauthorized,
)
from billing.sandbox.state import SandboxState

DELIVERIES = {
    BehaviorKind.COMMIT_THEN_TIMEOUT: Delivery.HANG,
    BehaviorKind.COMMIT_THEN_RESET: Delivery.RESET,
    BehaviorKind.NET_CANCEL: Delivery.HANG,
    BehaviorKind.PAID_THEN_REFUNDED: Delivery.HANG,
    BehaviorKind.READY: Delivery.HANG,
}
STATUSES = {
    BehaviorKind.DECLINE: PaymentStatus.FAILED,
    BehaviorKind.NET_CANCEL: PaymentStatus.CANCELLED,
    BehaviorKind.READY: PaymentStatus.READY,
}
SERVER_ERROR = "sandbox: simulated internal server error"
CONSOLE_REFUND = "관리자 콘솔에서 환불"


def again(state: SandboxState, request: Request) -> Reply:
    return execute(state, fields.charge_order(request.fields), request.token)


def execute(
    state: SandboxState, order: ChargeOrder, token: str | None = None, delays: bool = True
) -> Reply:
    """Charge ``order`` on its customer's key as the script decides: ``again``'s whole path,
    also taken by a hosted schedule when it fires (``delays=False``: nobody waits for it)."""
    decision = state.behaviors.next_for(order.customer_uid)
    _count(state, decision)
    if decision.delay_ms and delays:
        state.sleep(decision.delay_ms / 1000)
    early = _before_processing(state, token, order, decision.behavior)
    return early if early is not None else _process(state, order, decision.behavior)


def onetime(state: SandboxState, request: Request) -> Reply:
    """A key-in payment with the card data in the body; with ``customer_uid`` the card's
    billing key is issued as well, when the payment is approved (the seed's "빌링키 발급 및
    최초 결제"). The script and the faults are those of ``again`` for that customer_uid."""
    order = fields.onetime_order(request.fields)
    try:
        card, contact = fields.registration(request.fields, state.today())
    except CardRefused as exc:
        return refusal(str(exc))
    decision = state.behaviors.next_for(order.customer_uid)
    _count(state, decision)
    if decision.delay_ms:
        state.sleep(decision.delay_ms / 1000)
    early = _before_processing(state, request.token, order, decision.behavior)
    if early is not None:
        return early

    def issue_key() -> None:
        if order.customer_uid:
            state.keys.register(order.customer_uid, card, contact, state.now())

    return _charge(state, order, card, decision.behavior, issue_key)


def _count(state: SandboxState, decision: Decision) -> None:
    if decision.delay_ms:
        state.counters.fault(BehaviorKind.LATENCY.value)
    if decision.behavior.kind is not BehaviorKind.APPROVE:
        state.counters.fault(decision.behavior.kind.value)


def _before_processing(
    state: SandboxState, token: str | None, order: ChargeOrder, behavior: Behavior
) -> Reply | None:
    """The answers given before the PG sees the charge: nothing is recorded."""
    kind = behavior.kind
    if kind is BehaviorKind.ERROR_500:
        return refusal(SERVER_ERROR, 500)
    if kind is BehaviorKind.TOKEN_EXPIRED:
        state.tokens.revoke(token)
        return unauthorized()
    if kind is BehaviorKind.REFUSE:
        return refusal(behavior.argument or DEFAULT_REFUSE_MESSAGE)
    if kind is BehaviorKind.UNKNOWN_CUSTOMER:
        return unknown_customer(order.customer_uid)
    if kind is BehaviorKind.RATE_LIMITED:
        reply = refusal("Too Many Requests", 429)
        wait = (("Retry-After", behavior.argument),) if behavior.argument else ()
        return Reply(reply.status, reply.body, headers=wait)
    return None


def unknown_customer(customer_uid: str) -> Reply:
    return refusal(
        f"등록되지 않은 구매자입니다. customer_uid({customer_uid})에 해당하는 빌링키가 없습니다"
    )


def _process(state: SandboxState, order: ChargeOrder, behavior: Behavior) -> Reply:
    """Charge the key: record the payment (paid or declined) and pick the delivery."""
    key = state.keys.find(order.customer_uid, state.now())
    if key is None:
        return unknown_customer(order.customer_uid)
    return _charge(state, order, key.card, behavior)


def _charge(
    state: SandboxState,
    order: ChargeOrder,
    card: CardFace,
    behavior: Behavior,
    approved: Callable[[], None] | None = None,
) -> Reply:
    """Record the payment on ``card`` (paid or declined) and pick the delivery; ``approved``
    runs when the PG approved it (a onetime payment issues its key then)."""
    now = state.now()
    declined = behavior.kind is BehaviorKind.DECLINE
    status = STATUSES.get(behavior.kind, PaymentStatus.PAID)
    reason = (behavior.argument or DEFAULT_DECLINE_REASON) if declined else None
    try:
        payment = state.ledger.record(order, card, status, now, reason)
    except AlreadyPaid as exc:
        return already_paid(exc.payment)
    if approved is not None and status is PaymentStatus.PAID:
        approved()
    if status is PaymentStatus.PAID:
        notify(state, payment, order.notice_url)
    if behavior.kind is BehaviorKind.PAID_THEN_REFUNDED:
        payment = state.ledger.cancel(
            payment.imp_uid, None, CancelTerms(reason=CONSOLE_REFUND), now
        )
        notify(state, payment, order.notice_url)
    if behavior.kind is BehaviorKind.ALREADY_PAID:  # PortOne paid it, then answered a refusal
        return already_paid(payment)
    reply = ok(payment_json(payment))
    return Reply(reply.status, reply.body, DELIVERIES.get(behavior.kind, Delivery.ANSWER))


def already_paid(payment: Payment) -> Reply:
    return refusal(
        f"이미 결제가 완료된 merchant_uid입니다 ({payment.merchant_uid}, "
        f"imp_uid {payment.imp_uid}, {payment.status})"
    )


def notify(state: SandboxState, payment: Payment, notice_url: str | None = None) -> None:
    """Queue the webhook of ``payment`` when a notice_url is configured (or was sent)."""
    url = notice_url or state.config.notice_url
    if url:
        state.webhooks.notify(url, payment.imp_uid, payment.merchant_uid, payment.status.value)
