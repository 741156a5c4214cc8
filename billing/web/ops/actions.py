"""The console's actions (POST), each a form with a reason and the page's CSRF token.

Every action calls the service the CLI and the API call, inside ``acting_as("ops:<user>",
reason)`` so that its events name the operator and the reason. A form without a valid token
is 403 and does nothing; bad input is the subscription page again with a one-line message
(400), as is a refusal of the service (409, its own message); success is a redirect to the
subscription page (303), so that reloading it does not act twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.db.tables import Charge, Notice, Refund
from billing.domain.statuses import SubscriptionStatus
from billing.errors import BillingError, NotFound
from billing.logs import log
from billing.services import operator, subscriptions
from billing.services.history import acting_as
from billing.services.refunds import RefundRunner
from billing.services.search import MAX_ID
from billing.web.ops.console import Console
from billing.web.ops.csrf import FIELD
from billing.web.ops.forms import BodyTooLarge, Form, read_form
from billing.web.ops.pages import render_subscription, status_of

logger = logging.getLogger("billing.ops")
Act = Callable[[Console, Form, int], str]  # (console, form, path id) -> what was done
Locate = Callable[[Console, int], int]  # path id -> the subscription whose page to show
FORBIDDEN = (
    "this form has no valid CSRF token (it is older than a day, or was not made by this "
    "console): reload the page and submit it again"
)


def retry(console: Console, form: Form, subscription_id: int) -> str:
    reason = form.reason()
    with acting_as(console.auth.actor, reason):
        now = console.app.clocks.billing.now()
        with console.app.transaction() as session:
            operator.retry_now(session, subscription_id, now)
    return "retried"


def cancel(console: Console, form: Form, subscription_id: int) -> str:
    at_period_end = form.choice("when", ("now", "period_end")) == "period_end"
    reason = form.reason()
    with acting_as(console.auth.actor, reason):
        now, wall = console.app.clocks.billing.now(), console.app.clocks.system.now()
        with console.app.transaction() as session:
            row = subscriptions.cancel(session, subscription_id, now, wall, at_period_end)
            canceled = row.status == SubscriptionStatus.CANCELED
    return "canceled" if canceled else "cancel_scheduled"


def pause(console: Console, form: Form, subscription_id: int) -> str:
    reason = form.reason()
    with acting_as(console.auth.actor, reason):
        now, wall = console.app.clocks.billing.now(), console.app.clocks.system.now()
        with console.app.transaction() as session:
            subscriptions.pause(session, subscription_id, now, wall)
    return "paused"


def resume(console: Console, form: Form, subscription_id: int) -> str:
    reason = form.reason()
    with acting_as(console.auth.actor, reason):
        now = console.app.clocks.billing.now()
        with console.app.transaction() as session:
            subscriptions.resume(session, subscription_id, now)
    return "resumed"


def refund(console: Console, form: Form, charge_id: int) -> str:
    """As ``billing charges refund``: sent at once, looked up once if the answer is lost."""
    amount = form.amount()
    reason = form.reason()
    gateway = console.api.portone()
    with acting_as(console.auth.actor, reason):
        refund_id = RefundRunner(console.app, gateway).refund(charge_id, amount, reason)
    with console.app.transaction() as session:
        row = session.get(Refund, refund_id)
        status = row.status if row is not None else "pending"
    return f"refund_{status}" if status != "processing" else "refund_unknown"


def resend(console: Console, form: Form, notice_id: int) -> str:
    reason = form.reason()
    with acting_as(console.auth.actor, reason):
        now = console.app.clocks.billing.now()
        with console.app.transaction() as session:
            operator.resend_notice(session, notice_id, now, console.app.clocks.system.now())
    return "resent"


def same_subscription(console: Console, subscription_id: int) -> int:
    with console.app.transaction() as session:
        return subscriptions.get_subscription(session, subscription_id).id


def charge_subscription(console: Console, charge_id: int) -> int:
    with console.app.transaction() as session:
        charge = session.get(Charge, charge_id)
        if charge is None:
            raise NotFound(f"no charge {charge_id}")
        return charge.subscription_id


def notice_subscription(console: Console, notice_id: int) -> int:
    with console.app.transaction() as session:
        notice = session.get(Notice, notice_id)
        if notice is None or notice.subscription_id is None:
            raise NotFound(f"no notice {notice_id} of a subscription")
        return notice.subscription_id


def carry_out(console: Console, request: Request, form: Form, act: Act, locate: Locate) -> Response:
    """Runs on a thread: the action, then the redirect, or the page with what went wrong."""
    target = int(next(iter(request.path_params.values())))
    try:
        subscription_id = _locate(console, locate, target)
    except BillingError as exc:
        return console.error(request, status_of(exc), exc.message)
    except SQLAlchemyError as exc:
        return _database_error(console, request, exc)
    name, actor = request.url.path.rsplit("/", 1)[-1], console.auth.actor
    try:
        done = act(console, form, target)
    except BillingError as exc:
        log(logger, "ops_action_refused", exc.message, action_name=name, actor=actor, target=target)
        return refusal(console, request, subscription_id, exc)
    except SQLAlchemyError as exc:
        return _database_error(console, request, exc)
    log(logger, "ops_action", done, action_name=name, actor=actor, target=target)
    return console.redirect(request, f"/subscriptions/{subscription_id}?done={done}")


def _locate(console: Console, locate: Locate, target: int) -> int:
    if target > MAX_ID:
        raise NotFound(f"nothing has id {target}")
    return locate(console, target)


def _database_error(console: Console, request: Request, exc: SQLAlchemyError) -> Response:
    log(logger, "ops_database_error", str(exc).splitlines()[0], level=logging.WARNING)
    return console.error(
        request, 503, "the database is unavailable: look at the timeline before trying again"
    )


def refusal(
    console: Console, request: Request, subscription_id: int, exc: BillingError
) -> Response:
    """The subscription's page with the refusal on it (or the refusal alone, if the page
    cannot be shown)."""
    try:
        return render_subscription(
            console, request, subscription_id, status_of(exc), error=exc.message
        )
    except BillingError:
        return console.error(request, status_of(exc), exc.message)


def post(console: Console, act: Act, locate: Locate) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BodyTooLarge:
            return console.error(request, 413, "the form is too large")
        if not console.tokens.valid(form.get(FIELD)):
            log(
                logger,
                "ops_csrf_refused",
                "a form without a valid CSRF token",
                level=logging.WARNING,
                path=request.url.path,
            )
            return console.error(request, 403, FORBIDDEN)
        return await run_in_threadpool(carry_out, console, request, form, act, locate)

    return endpoint


def routes(console: Console) -> list[Route]:
    subscription = "/subscriptions/{subscription_id:int}"
    actions: list[tuple[str, Act, Locate]] = [
        (f"{subscription}/retry", retry, same_subscription),
        (f"{subscription}/cancel", cancel, same_subscription),
        (f"{subscription}/pause", pause, same_subscription),
        (f"{subscription}/resume", resume, same_subscription),
        ("/charges/{charge_id:int}/refund", refund, charge_subscription),
        ("/notices/{notice_id:int}/resend", resend, notice_subscription),
    ]
    return [
        Route(path, post(console, act, locate), methods=["POST"]) for path, act, locate in actions
    ]
