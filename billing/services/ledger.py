"""Ledger reconciliation (SPEC 10): PortOne's payments compared with ours, merchant_uid by
merchant_uid, and the differences repaired.

PortOne's notices come once and may be lost, and a database restored from a backup (or
failed over to a replica that lost commits) forgets payments PortOne still holds: so
PortOne's own ledger (``GET /payments/status/{paid|cancelled}``, paged by time) is read
for a window, and for every payment of one of our merchant_uids (``sub-<key>-<p>-<a>``):

- recorded paid with the same imp_uid: agrees (a refund made in PortOne's console since is
  recorded: ``refunded_amount`` and a ``charge_refunded`` event);
- our charge exists but is not paid: it is recorded paid (and refunded, if it was);
- no charge of ours has the merchant_uid: if it names the subscription's due period, the
  charge is created and recorded paid, which advances the subscription; if that period is
  already paid by another charge, it is recorded as a duplicate for a person to refund;
- anything else (a period this database has not reached, another imp_uid, a key no
  subscription has) is reported, never guessed at.

A net-cancelled payment (PortOne cancelled it before it was ever paid) moved no money and
must not be recorded paid. The ledger is read in full before anything is written, and each
payment that may differ is compared in a savepoint: one that fails is reported and the others
go on.

A window holds every renewal of up to 90 days (three million payments for a million monthly
subscriptions), and nearly all of them agree. So each page is checked as it is read, in one
short read-only query for its merchant_uids (no lock, no connection held while PortOne is
asked for the next page), and only the payments that may differ are kept: memory grows with
the differences, not the window, and only those are locked and compared one by one, against
a fresh read under the lock. A charge that agrees cannot stop agreeing: a paid charge is
never unpaid again and ``refunded_amount`` only grows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.app import App
from billing.db.tables import Charge, Customer, Refund, Subscription
from billing.domain import lifecycle
from billing.domain.charges import ChargeStatus
from billing.domain.events import ChargeCreated
from billing.errors import InvalidInput
from billing.logs import log
from billing.portone.answers import Exchange
from billing.portone.ledger import MAX_DAYS, PAGE_SIZE, LedgerPayment, read_page
from billing.services.aside import describe
from billing.services.catalog_cache import CatalogCache
from billing.services.history import record_event
from billing.services.rows import load_state, store_state
from billing.services.settlement import (
    record_refund_at_portone,
    settle_paid,
    settle_refunded,
)

logger = logging.getLogger("billing.ledger")
OUR_MERCHANT_UID = re.compile(r"^sub-([a-z0-9]{12})-(\d+)-(\d+)$")
OPEN_REFUNDS = ("pending", "processing", "unknown")
LOOKUP = 500  # merchant_uids per IN (...): a page of 1,000 in two queries


class LedgerSource(Protocol):
    """The PortOne call the comparison needs (``PortOneClient.payments_by_status``)."""

    def payments_by_status(
        self, status: str, since: int, until: int, page: int, limit: int = PAGE_SIZE
    ) -> Exchange: ...


class Verdict(StrEnum):
    RECORDED_PAID = "recorded paid"
    RECORDED_REFUND = "recorded the refund"
    CREATED = "created the charge, recorded paid"
    DUPLICATE = "recorded as a duplicate payment (refund it)"
    REPORTED = "reported: not repaired"


@dataclass(frozen=True)
class Finding:
    merchant_uid: str
    imp_uid: str
    portone: str  # what PortOne holds
    ours: str  # what we held before
    verdict: Verdict
    detail: str = ""


@dataclass
class LedgerReport:
    since: datetime
    until: datetime
    read: int = 0  # payments PortOne holds in the window
    ours: int = 0  # of those, for our merchant_uids
    findings: list[Finding] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        """Both ledgers agree after the repairs: nothing was only reported."""
        return all(finding.verdict != Verdict.REPORTED for finding in self.findings)

    @property
    def repaired(self) -> int:
        return sum(1 for finding in self.findings if finding.verdict != Verdict.REPORTED)


def read_pages(
    source: LedgerSource, since: datetime, until: datetime
) -> Iterator[list[LedgerPayment]]:
    """Every page of paid, then of cancelled payments PortOne holds for the window
    (LedgerUnreadable if a page cannot be read)."""
    first, last = int(since.timestamp()), int(until.timestamp())
    for status in ("paid", "cancelled"):
        page = 1
        while page:
            result = read_page(source.payments_by_status(status, first, last, page))
            yield result.payments
            page = result.next_page


@dataclass(frozen=True, slots=True)
class Held:
    """What this database holds for a merchant_uid, as far as agreeing goes."""

    status: str
    imp_uid: str | None
    amount: int
    refunded_amount: int


Suspect = tuple[LedgerPayment, re.Match[str]]


def find_suspects(
    app: App, source: LedgerSource, since: datetime, until: datetime, report: LedgerReport
) -> list[Suspect]:
    """Read the whole ledger, page by page, and keep our payments that may differ."""
    suspects: list[Suspect] = []
    for payments in read_pages(source, since, until):
        report.read += len(payments)
        ours = [(p, m) for p in payments if (m := OUR_MERCHANT_UID.match(p.merchant_uid))]
        report.ours += len(ours)
        if ours:
            held = _held(app, [payment.merchant_uid for payment, _ in ours])
            suspects += [(p, m) for p, m in ours if not agrees(p, held.get(p.merchant_uid))]
    return suspects


def _held(app: App, merchant_uids: list[str]) -> dict[str, Held]:
    """Our charges of one page, in one short read-only transaction."""
    query = select(
        Charge.merchant_uid, Charge.status, Charge.imp_uid, Charge.amount, Charge.refunded_amount
    )
    held: dict[str, Held] = {}
    with app.transaction() as session:
        for offset in range(0, len(merchant_uids), LOOKUP):
            part = merchant_uids[offset : offset + LOOKUP]
            for row in session.execute(query.where(Charge.merchant_uid.in_(part))):
                held[row.merchant_uid] = Held(
                    row.status, row.imp_uid, row.amount, row.refunded_amount
                )
    return held


def agrees(payment: LedgerPayment, held: Held | None) -> bool:
    """Both ledgers agree on this payment: ``_compare_one`` would change and report nothing
    (False when it might; it then decides under the lock)."""
    if not payment.moved_money:
        return held is None or held.status != ChargeStatus.PAID
    return (
        held is not None
        and held.status == ChargeStatus.PAID
        and held.amount == payment.amount
        and held.imp_uid == payment.imp_uid
        and _refunded_at_portone(payment) <= held.refunded_amount
    )


def compare(
    session: Session,
    suspects: Iterable[Suspect],
    report: LedgerReport,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> None:
    """Compare (and repair) every payment that may differ, each in a savepoint, in the
    caller's transaction."""
    for payment, match in suspects:
        try:
            with session.begin_nested():
                finding = _compare_one(session, payment, match, now, wall, plans)
        except Exception as exc:  # one payment no code expected: reported, the rest go on
            finding = Finding(
                payment.merchant_uid,
                payment.imp_uid,
                _portone(payment),
                "?",
                Verdict.REPORTED,
                describe(exc),
            )
        if finding is not None:
            report.findings.append(finding)


def _compare_one(
    session: Session,
    payment: LedgerPayment,
    match: re.Match[str],
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> Finding | None:
    query = select(Charge).where(Charge.merchant_uid == payment.merchant_uid)
    charge = session.scalar(query.with_for_update())
    if not payment.moved_money:
        return _never_paid(payment, charge)
    if charge is None:
        return _adopt(session, payment, match, now, wall, plans)
    if payment.amount != charge.amount:
        return _other_amount(session, payment, charge, now, wall, plans)
    if charge.status != ChargeStatus.PAID:
        return _record_paid(session, payment, charge, now, wall, plans)
    if charge.imp_uid != payment.imp_uid:
        detail = f"recorded paid as {charge.imp_uid}, PortOne holds {payment.imp_uid} paid too"
        return _finding(payment, charge, Verdict.REPORTED, detail)
    return _console_refund(session, payment, charge, now)


def _never_paid(payment: LedgerPayment, charge: Charge | None) -> Finding | None:
    """A net-cancelled (or failed) payment: only a charge recorded paid disagrees."""
    if charge is None or charge.status != ChargeStatus.PAID:
        return None
    detail = "PortOne cancelled it before it was paid; here it is paid"
    return _finding(payment, charge, Verdict.REPORTED, detail)


def _other_amount(
    session: Session,
    payment: LedgerPayment,
    charge: Charge,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> Finding:
    """PortOne holds our merchant_uid paid with another amount than the charge's: a person
    must look. A charge not yet paid here is recorded paid all the same (money PortOne holds
    as paid is always recorded, invariant 3); nothing else is changed."""
    before = _ours(charge)
    if charge.status != ChargeStatus.PAID:
        settle_paid(session, charge, payment.imp_uid, now, wall, plans)
    detail = f"PortOne holds {payment.amount:,} KRW, the charge is {charge.amount:,} KRW"
    return Finding(
        payment.merchant_uid, payment.imp_uid, _portone(payment), before, Verdict.REPORTED, detail
    )


def _record_paid(
    session: Session,
    payment: LedgerPayment,
    charge: Charge,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> Finding:
    before = _ours(charge)
    if payment.status == "cancelled":
        settle_refunded(
            session,
            charge,
            payment.imp_uid,
            _refunded(payment),
            payment.cancel_reason,
            now,
            wall,
            plans,
        )
    else:
        settle_paid(session, charge, payment.imp_uid, now, wall, plans)
        record_refund_at_portone(session, charge, payment.cancel_amount, "", now)
    verdict = Verdict.DUPLICATE if charge.duplicate_of else Verdict.RECORDED_PAID
    return Finding(payment.merchant_uid, payment.imp_uid, _portone(payment), before, verdict)


def _console_refund(
    session: Session, payment: LedgerPayment, charge: Charge, now: datetime
) -> Finding | None:
    refunded = _refunded_at_portone(payment)
    if refunded <= charge.refunded_amount or _refund_in_progress(session, charge):
        return None  # agrees (or our own refund is on its way and will record itself)
    before = _ours(charge)
    record_refund_at_portone(session, charge, refunded, payment.cancel_reason, now)
    return Finding(
        payment.merchant_uid, payment.imp_uid, _portone(payment), before, Verdict.RECORDED_REFUND
    )


def _adopt(
    session: Session,
    payment: LedgerPayment,
    match: re.Match[str],
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> Finding:
    """No charge of ours has the merchant_uid (our database forgot it): take it back."""
    key, period_no, attempt = match.group(1), int(match.group(2)), int(match.group(3))
    query = select(Subscription).where(Subscription.key == key).with_for_update()
    sub = session.scalar(query)
    if sub is None:
        return _missing(payment, Verdict.REPORTED, f"no subscription has the key {key}")
    if period_no > sub.period_no:
        detail = (
            f"PortOne holds period {period_no}; this database has not reached it (the "
            f"subscription is at period {sub.period_no}): restored from an older backup?"
        )
        return _missing(payment, Verdict.REPORTED, detail)
    first = session.scalar(
        select(Charge.id).where(
            Charge.subscription_id == sub.id,
            Charge.period_no == period_no,
            Charge.status == ChargeStatus.PAID,
        )
    )
    if period_no < sub.period_no and first is None:
        detail = f"period {period_no} was passed here without a payment"
        return _missing(payment, Verdict.REPORTED, detail)
    charge = _charge_for(session, sub, payment, period_no, attempt, now, wall, plans)
    _record_paid(session, payment, charge, now, wall, plans)
    verdict = Verdict.DUPLICATE if charge.duplicate_of else Verdict.CREATED
    return _missing(payment, verdict, "")


def _charge_for(
    session: Session,
    sub: Subscription,
    payment: LedgerPayment,
    period_no: int,
    attempt: int,
    now: datetime,
    wall: datetime,
    plans: CatalogCache,
) -> Charge:
    """The charge row PortOne's payment belongs to, for the due period (or, for a duplicate,
    the period's paid terms), written as a failed placeholder that settle_paid turns paid."""
    state = load_state(sub)
    plan = plans.version(session, sub.plan_id, sub.plan_version)
    period = state.due if period_no == sub.period_no else None
    paid = (
        None
        if period is not None
        else session.scalar(
            select(Charge).where(
                Charge.subscription_id == sub.id,
                Charge.period_no == period_no,
                Charge.status == ChargeStatus.PAID,
            )
        )
    )
    customer = session.get(Customer, sub.customer_id)
    assert customer is not None
    charge = Charge(
        subscription_id=sub.id,
        period_no=period_no,
        attempt=attempt,
        merchant_uid=payment.merchant_uid,
        customer_uid=customer.customer_uid,
        plan_id=paid.plan_id if paid else plan.id,
        plan_version=paid.plan_version if paid else plan.version,
        name=paid.name if paid else plan.name,
        amount=payment.amount,
        card_quota=plan.card_quota,
        period_start=paid.period_start if paid else state.due.start,
        period_end=paid.period_end if paid else state.due.end,
        status=ChargeStatus.FAILED,
        sends=0,
        lookups=0,
        refunded_amount=0,
        created_at=now,
        updated_at=wall,
    )
    session.add(charge)
    if period is not None and not state.due_has_begun:
        store_state(sub, lifecycle.begin_period(state))
    session.flush()
    record_event(
        session,
        ChargeCreated(
            merchant_uid=charge.merchant_uid,
            amount=charge.amount,
            period_no=period_no,
            attempt=attempt,
            source="ledger reconciliation: PortOne holds it paid, this database did not know it",
        ),
        now,
        subscription_id=sub.id,
        charge_id=charge.id,
    )
    return charge


def _refund_in_progress(session: Session, charge: Charge) -> bool:
    query = select(Refund.id).where(Refund.charge_id == charge.id, Refund.status.in_(OPEN_REFUNDS))
    return session.scalar(query.limit(1)) is not None


def _refunded(payment: LedgerPayment) -> int:
    """Cancelled in full (status cancelled): the cancelled amount, or all of it."""
    return payment.cancel_amount or payment.amount


def _refunded_at_portone(payment: LedgerPayment) -> int:
    """What PortOne has given back of a payment that moved money, in all."""
    return _refunded(payment) if payment.status == "cancelled" else payment.cancel_amount


def _portone(payment: LedgerPayment) -> str:
    if payment.status == "cancelled":
        return f"paid {payment.amount:,}, refunded {_refunded(payment):,}"
    refunded = f", refunded {payment.cancel_amount:,}" if payment.cancel_amount else ""
    return f"paid {payment.amount:,}{refunded}"


def _ours(charge: Charge) -> str:
    refunded = f", refunded {charge.refunded_amount:,}" if charge.refunded_amount else ""
    return f"{charge.status} {charge.amount:,}{refunded}"


def _finding(payment: LedgerPayment, charge: Charge, verdict: Verdict, detail: str) -> Finding:
    return Finding(
        payment.merchant_uid, payment.imp_uid, _portone(payment), _ours(charge), verdict, detail
    )


def _missing(payment: LedgerPayment, verdict: Verdict, detail: str) -> Finding:
    return Finding(
        payment.merchant_uid, payment.imp_uid, _portone(payment), "missing", verdict, detail
    )


def reconcile_ledger(
    app: App,
    source: LedgerSource,
    since: datetime,
    until: datetime,
    plans: CatalogCache,
) -> LedgerReport:
    """Read PortOne's ledger for [since, until] (each page checked in a short read-only
    transaction, no connection held while PortOne answers), then compare and repair the
    payments that may differ in one transaction. LedgerUnreadable when a page cannot be
    read (nothing is then written)."""
    if until - since > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"--since: PortOne keeps its ledger searchable {MAX_DAYS} days back")
    if until < since:
        raise InvalidInput("--since: must be before --until")
    report = LedgerReport(since, until)
    suspects = find_suspects(app, source, since, until, report)
    now = app.clocks.billing.now()
    with app.transaction() as session:
        compare(session, suspects, report, now, app.clocks.system.now(), plans)
    log(
        logger,
        "ledger_reconciled",
        read=report.read,
        ours=report.ours,
        repaired=report.repaired,
        reported=len(report.findings) - report.repaired,
    )
    return report
