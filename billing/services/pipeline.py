"""The charge and reconcile steps as the worker runs them: transaction, call, transaction.

The gateway call happens between two short transactions; no connection is held across it.
Follow-up messages are published only after the second transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.bootstrap import App
from billing.logs import log
from billing.portone.answers import (
    ChargeAnswer,
    Found,
    Lookup,
    classify_again,
    classify_find_all,
    classify_find_paid,
)
from billing.services.charging import ChargeWork, FollowUp, begin_charges, finish_charges
from billing.services.delivery import begin_delivery, finish_delivery
from billing.services.plan_cache import PlanCache
from billing.services.ports import Gateway, NoticeSender, Publisher
from billing.services.reconcile import begin_reconcile, finish_reconcile

logger = logging.getLogger("billing.pipeline")


def system_now() -> datetime:
    return datetime.now(UTC)


class InlineExecutor(Executor):
    """Runs calls one after another in the caller's thread (tests, single charges)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def map(self, fn: Callable[..., Any], *iterables: Any, **_: Any) -> Iterator[Any]:
        return iter([fn(*args) for args in zip(*iterables, strict=True)])


class Pipeline:
    def __init__(
        self,
        app: App,
        gateway: Gateway,
        publisher: Publisher,
        plans: PlanCache,
        wall: Callable[[], datetime] = system_now,
        calls: Executor | None = None,
    ) -> None:
        self.app = app
        self.calls = calls or InlineExecutor()
        self.gateway = gateway
        self.publisher = publisher
        self.plans = plans
        self.wall = wall
        self.window = timedelta(seconds=app.settings.reconcile_after)

    def charge(self, charge_ids: int | Sequence[int]) -> str | None:
        """Send pending charges (one, or a batch) and record the outcomes.

        One transaction takes the batch (pending -> processing), the calls run in parallel
        on the process's call pool with no connection held, and one transaction records
        every answer. Returns the last outcome, or None when there was nothing to do.
        """
        ids = [charge_ids] if isinstance(charge_ids, int) else list(charge_ids)
        with self.app.transaction() as session:
            works = begin_charges(session, ids, self.wall())
        if not works:
            return None
        answers = list(self.calls.map(self._call, works))
        now = self.app.clock.now()
        with self.app.transaction() as session:
            follow = finish_charges(session, list(zip(works, answers, strict=True)), now,
                                    self.wall(), self.plans)  # fmt: skip
        self._publish(follow)
        return str(answers[-1].outcome)

    def _call(self, work: ChargeWork) -> ChargeAnswer:
        exchange = self.gateway.again(work.request)
        answer = classify_again(
            exchange, work.request.merchant_uid, work.request.amount, resend=work.resend
        )
        log(logger, "charge_answer", merchant_uid=work.request.merchant_uid,
            amount=work.request.amount, send=work.sends, outcome=str(answer.outcome),
            http_status=answer.http_status, code=answer.code, reason=answer.reason)  # fmt: skip
        return answer

    def reconcile(self, charge_id: int) -> str | None:
        """Ask PortOne about one unknown charge and act on the answer."""
        with self.app.transaction() as session:
            work = begin_reconcile(session, charge_id, self.wall(), self.window)
        if work is None:
            return None
        lookup = self._lookup(work.merchant_uid, work.amount)
        log(logger, "reconcile_lookup", merchant_uid=work.merchant_uid,
            found=str(lookup.found), reason=lookup.reason)  # fmt: skip
        now = self.app.clock.now()
        with self.app.transaction() as session:
            follow = finish_reconcile(
                session, work, lookup, now, self.wall(), self.window, self.plans
            )
        self._publish(follow)
        return str(lookup.found)

    def _lookup(self, merchant_uid: str, amount: int) -> Lookup:
        paid = classify_find_paid(self.gateway.find_paid(merchant_uid), merchant_uid, amount)
        if paid.found != Found.NOTHING:
            return paid
        return classify_find_all(self.gateway.find_all(merchant_uid), merchant_uid)

    def deliver(self, notice_id: int, sender: NoticeSender) -> str | None:
        """Send one notice from the outbox; at least once (see services.delivery)."""
        from billing.notify import DeliveryError

        with self.app.transaction() as session:
            work = begin_delivery(session, notice_id, self.wall())
        if work is None:
            return None
        error = None
        try:
            sender.send(work)
        except DeliveryError as exc:
            error = str(exc)
        log(logger, "notice_delivery", event_id=work.event_id, kind=work.kind,
            channel=work.channel, attempt=work.attempt, error=error)  # fmt: skip
        now = self.app.clock.now()
        with self.app.transaction() as session:
            finish_delivery(session, work, error, now, self.wall())
        return "delivered" if error is None else "retry"

    def _publish(self, follow: FollowUp) -> None:
        if follow.charge:
            self.publisher.charge(follow.charge, follow.countdown)
        if follow.reconcile:
            self.publisher.reconcile(follow.reconcile, follow.countdown)
