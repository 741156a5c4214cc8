"""A worker's three steps, each a class: sending charges (``ChargeSender``), looking them up
(``ChargeReconciler``), delivering outgoing notices (``NoticeDeliverer``).

The gateway call happens between two short transactions; no connection is held across it.
Follow-up messages are published only after the second transaction commits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.engine import is_outage
from billing.domain.answers import ChargeAnswer, Found, Outcome
from billing.domain.charges import Timing
from billing.logs import log
from billing.services.aside import describe, keep_answer
from billing.services.catalog_cache import CatalogCache
from billing.services.charging import ChargeWork, begin_charges, finish_charges
from billing.services.delivery import begin_delivery, finish_delivery
from billing.services.ports import ChargeGateway, DeliveryError, NoticeSender, Publisher
from billing.services.reconcile import ReconcileWork, begin_reconcile, finish_reconcile
from billing.services.settlement import FollowUp

logger = logging.getLogger("billing.pipeline")
T = TypeVar("T")
RECORD_TRIES = 7  # the database is waited for about a minute while the answers are in hand
RECORD_BACKOFF = 0.5  # seconds, doubled per try


def _alone(record: Callable[[Session, list[T]], FollowUp], item: T, session: Session) -> FollowUp:
    return record(session, [item])


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


class _Recording:
    """What the three steps share: the clocks, the plans, the publisher, and recording an
    answer in short transactions that wait out a database outage."""

    def __init__(
        self,
        app: App,
        publisher: Publisher,
        plans: CatalogCache,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.jitter = jitter
        self.publisher = publisher
        self.plans = plans
        self.window = timedelta(seconds=app.settings.reconcile_after)

    def timing(self) -> Timing:
        return Timing(self.app.clocks.system.now(), self.window, self.jitter())

    def _in_transactions(
        self,
        items: list[T],
        record: Callable[[Session, list[T]], FollowUp],
        kept: Callable[[T], tuple[int, str | None]],
        what: str,
    ) -> FollowUp:
        """Record ``items`` in one transaction. A database that is unreachable is waited
        for while the answers are still in hand (a retried task would find nothing to do
        and lose them). A batch that fails for one row's sake is recorded row by row, and
        a row that fails alone is set aside, its payment (if PortOne paid) kept first."""
        try:
            return self._retrying(lambda session: record(session, items), what)
        except Exception as exc:
            if is_outage(exc):
                return self._lost(what, items, exc)
        follow = FollowUp()
        for item in items:
            try:
                follow.add(self._retrying(partial(_alone, record, item), what))
            except Exception as exc:
                if is_outage(exc):
                    self._lost(what, [item], exc)
                    continue
                charge_id, paid = kept(item)
                with self.app.transaction() as session:
                    keep_answer(
                        session,
                        charge_id,
                        paid,
                        describe(exc),
                        self.app.clocks.billing.now(),
                        self.app.clocks.system.now(),
                    )
        return follow

    def _lost(self, what: str, items: Sequence[object], exc: BaseException) -> FollowUp:
        """Still unreachable: the sweep reconciles these charges after the window."""
        log(
            logger,
            "record_lost",
            level=logging.ERROR,
            what=what,
            count=len(items),
            error=describe(exc),
        )
        return FollowUp()

    def _retrying(self, work: Callable[[Session], FollowUp], what: str) -> FollowUp:
        """``work`` in a transaction, tried again while the database is unreachable."""
        for attempt in range(RECORD_TRIES):
            try:
                with self.app.transaction() as session:
                    return work(session)
            except SQLAlchemyError as exc:
                if not is_outage(exc) or attempt == RECORD_TRIES - 1:
                    raise
                log(
                    logger,
                    "record_retry",
                    level=logging.WARNING,
                    what=what,
                    attempt=attempt + 1,
                    error=describe(exc),
                )
                time.sleep(RECORD_BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    def _publish(self, follow: FollowUp) -> None:
        if follow.charge:
            self.publisher.charge(follow.charge, follow.countdown)
        if follow.reconcile:
            self.publisher.reconcile(follow.reconcile, follow.countdown)


class ChargeSender(_Recording):
    """Sends pending charges to PortOne and records the answers (the ``charge`` task)."""

    def __init__(
        self,
        app: App,
        gateway: ChargeGateway,
        publisher: Publisher,
        plans: CatalogCache,
        calls: Executor | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(app, publisher, plans, jitter)
        self.gateway = gateway
        self.calls = calls or InlineExecutor()
        # A send not started this long after its charge was taken is not sent: it then
        # ends (answer or read timeout) before the window after which it may be sent again.
        budget = app.settings.reconcile_after - app.settings.portone_timeout
        self.send_budget = timedelta(seconds=max(0.0, budget))

    def charge(self, charge_ids: int | Sequence[int]) -> str | None:
        """Send pending charges (one, or a batch) and record the outcomes.

        One transaction takes the batch (pending -> processing), the calls run in parallel
        on the process's call pool with no connection held, and one transaction records
        every answer. Returns the last outcome, or None when there was nothing to do.
        """
        ids = [charge_ids] if isinstance(charge_ids, int) else list(charge_ids)
        now = self.app.clocks.billing.now()
        timing = self.timing()
        with self.app.transaction() as session:
            begun = begin_charges(session, ids, now, timing, self.plans)
        self._publish(FollowUp(reconcile=begun.lookups))
        return self.send(begun.works, timing)

    def send(self, works: Sequence[ChargeWork], timing: Timing) -> str | None:
        """Send charges already taken (processing, committed) with ``timing`` and record the
        outcomes; the last outcome, or None when there was nothing to send."""
        if not works:
            return None
        send_by = timing.wall + self.send_budget
        answers = list(self.calls.map(partial(self._call, send_by=send_by), works))
        self._publish(self._record(list(zip(works, answers, strict=True))))
        return str(answers[-1].outcome)

    def _call(self, work: ChargeWork, send_by: datetime) -> ChargeAnswer:
        remaining = (send_by - self.app.clocks.system.now()).total_seconds()
        if remaining <= 0:  # it waited behind other calls too long: nothing is sent
            answer = ChargeAnswer(Outcome.TRANSIENT, "not sent: waited past its send deadline")
        else:
            answer = self.gateway.charge(work.request, send_within=remaining)
        log(
            logger,
            "charge_answer",
            merchant_uid=work.request.merchant_uid,
            amount=work.request.amount,
            send=work.sends,
            outcome=str(answer.outcome),
            http_status=answer.http_status,
            code=answer.code,
            reason=answer.reason,
        )
        return answer

    def _record(self, pairs: list[tuple[ChargeWork, ChargeAnswer]]) -> FollowUp:
        """Record the answers in one transaction (see ``_in_transactions``)."""

        def record(session: Session, chunk: list[tuple[ChargeWork, ChargeAnswer]]) -> FollowUp:
            now = self.app.clocks.billing.now()
            return finish_charges(session, chunk, now, self.timing(), self.plans)

        def kept(pair: tuple[ChargeWork, ChargeAnswer]) -> tuple[int, str | None]:
            work, answer = pair
            return work.charge_id, answer.imp_uid if answer.outcome == Outcome.APPROVED else None

        return self._in_transactions(pairs, record, kept, "charge answers")


class ChargeReconciler(_Recording):
    """Looks an open charge up in PortOne and acts on what it finds (the ``reconcile`` task)."""

    def __init__(
        self,
        app: App,
        gateway: ChargeGateway,
        publisher: Publisher,
        plans: CatalogCache,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(app, publisher, plans, jitter)
        self.gateway = gateway

    def reconcile(self, charge_id: int) -> str | None:
        """Ask PortOne about one open charge and act on the answer."""
        with self.app.transaction() as session:
            work = begin_reconcile(session, charge_id, self.timing())
        if work is None:
            return None
        lookup = self.gateway.lookup(work.merchant_uid, work.amount)
        log(
            logger,
            "reconcile_lookup",
            merchant_uid=work.merchant_uid,
            found=str(lookup.found),
            reason=lookup.reason,
        )

        def record(session: Session, _: list[ReconcileWork]) -> FollowUp:
            now = self.app.clocks.billing.now()
            return finish_reconcile(session, work, lookup, now, self.timing(), self.plans)

        def kept(item: ReconcileWork) -> tuple[int, str | None]:
            paid = lookup.found in (Found.PAID, Found.REFUNDED)
            return item.charge_id, lookup.imp_uid if paid else None

        self._publish(self._in_transactions([work], record, kept, "lookup"))
        return str(lookup.found)


class NoticeDeliverer:
    """Sends one outgoing notice from the outbox (the ``deliver`` task); at least once
    (see ``services.delivery``)."""

    def __init__(
        self,
        app: App,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.jitter = jitter

    def deliver(self, notice_id: int, sender: NoticeSender) -> str | None:
        with self.app.transaction() as session:
            work = begin_delivery(session, notice_id, self.app.clocks.system.now())
        if work is None:
            return None
        error = None
        try:
            sender.send(work)
        except DeliveryError as exc:
            error = str(exc)
        log(
            logger,
            "notice_delivery",
            event_id=work.event_id,
            kind=work.kind,
            channel=work.channel,
            attempt=work.attempt,
            error=error,
        )
        now = self.app.clocks.billing.now()
        with self.app.transaction() as session:
            finish_delivery(session, work, error, now, self.app.clocks.system.now(), self.jitter())
        return "delivered" if error is None else "retry"


class Pipeline:
    """A worker's three steps, built from one set of parts: ``sender`` sends charges,
    ``reconciler`` looks them up, ``deliverer`` sends notices. The Celery tasks (and the
    first payment) call ``charge``, ``send``, ``reconcile`` and ``deliver`` here."""

    def __init__(
        self,
        app: App,
        gateway: ChargeGateway,
        publisher: Publisher,
        plans: CatalogCache,
        calls: Executor | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.plans = plans
        self.sender = ChargeSender(app, gateway, publisher, plans, calls, jitter)
        self.reconciler = ChargeReconciler(app, gateway, publisher, plans, jitter)
        self.deliverer = NoticeDeliverer(app, jitter)

    @property
    def calls(self) -> Executor:
        """The pool the PortOne calls of a batch run on."""
        return self.sender.calls

    def timing(self) -> Timing:
        return self.sender.timing()

    def charge(self, charge_ids: int | Sequence[int]) -> str | None:
        return self.sender.charge(charge_ids)

    def send(self, works: Sequence[ChargeWork], timing: Timing) -> str | None:
        return self.sender.send(works, timing)

    def reconcile(self, charge_id: int) -> str | None:
        return self.reconciler.reconcile(charge_id)

    def deliver(self, notice_id: int, sender: NoticeSender) -> str | None:
        return self.deliverer.deliver(notice_id, sender)
