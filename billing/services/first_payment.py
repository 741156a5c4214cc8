"""A subscription paid by card at the checkout: the key-in first payment.

``POST /v1/subscriptions`` with ``card`` and ``billing subscriptions create --card-number``
subscribe and pay the first period in one ``POST /subscribe/payments/onetime`` that issues
the customer's billing key (renewals then charge it with ``again``). It is a charge like any
other, on the worker's own path:

1. One transaction creates the subscription, claims its first period as the scheduler would
   (the charge row and its deterministic merchant_uid) and takes it (pending -> processing).
   It commits before anything is sent: the scheduler never claims that period again, and if
   this process dies mid-call the sweep reconciles the charge like any other.
2. ``Pipeline.send`` makes the call with no connection held and records the answer with the
   charge state machine; the card data lives only in ``OnetimeGateway`` for that one call.
3. An answer not seen (a timeout, a 5xx, a refusal to be checked) is looked up at once, once;
   if PortOne still cannot say, the sweep goes on looking as for every charge.

A first payment that is declined, or that could not be sent at all, ends the subscription at
once (``end_unpaid_start``): the customer is still at the checkout and there is no key to
charge later. The caller sees why (``FirstPaymentDeclined``, ``FirstPaymentNotSent``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from billing.app import App
from billing.config import Settings
from billing.db.tables import Charge
from billing.db.tables import Subscription as SubscriptionRow
from billing.domain.charges import ChargeStatus, Timing
from billing.domain.events import BillingKeyRegistered
from billing.domain.retry import FIRST_LOOKUP_DELAY
from billing.errors import BillingError, Conflict, InvalidInput
from billing.portone.client import PortOneClient
from billing.portone.keys import CardDetails
from billing.portone.onetime import OnetimeGateway
from billing.services.billing_keys import remember_card
from billing.services.catalog_cache import CatalogCache
from billing.services.charging import ChargeWork, begin_charges
from billing.services.claims import claim_due
from billing.services.history import record_event
from billing.services.pipeline import Pipeline
from billing.services.subscribing import subscribe
from billing.services.subscriptions import end_unpaid_start


class FirstPaymentDeclined(BillingError):
    """PortOne or the card company declined the first payment; nothing was charged."""


class FirstPaymentNotSent(BillingError):
    """The first payment never reached PortOne (its token, a 429, a full pool): nothing was
    charged and the subscription was ended; the same request may be made again."""


@dataclass
class HeldMessages:
    """The pipeline's publisher here: follow-ups are acted on in this process, not queued
    (the sweep finds anything left open, as it does for every charge)."""

    reconciles: list[int] = field(default_factory=list)
    countdowns: list[float] = field(default_factory=list)

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        """A resend: handled by ``_after`` (the card is not kept for a second send)."""

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self.reconciles.extend(charge_ids)
        self.countdowns.append(countdown or 0.0)

    def notify(self, notice_ids: Sequence[int]) -> None:
        """Notices are delivered by the scheduler's sweep of undelivered notices."""

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None:
        """Never asked for by a charge."""

    def reconcile_ledger(self) -> None:
        """Never asked for by a charge."""


@dataclass(frozen=True)
class FirstPayment:
    subscription_id: int
    charge_id: int
    status: str  # the first charge's: paid, or unknown/processing while PortOne is asked


def subscribe_and_pay(
    app: App,
    client: PortOneClient,
    customer_uid: str,
    plan_id: str,
    start: str | None,
    card: CardDetails,
    *,
    start_field: str = "--start",
    sleep: Callable[[float], None] = time.sleep,
) -> FirstPayment:
    """Subscribe ``customer_uid`` to ``plan_id`` and pay the first period with ``card``."""
    plans, held = CatalogCache(), HeldMessages()
    gateway = OnetimeGateway(client, card, site_pg(app.settings))
    pipeline = Pipeline(app, gateway, held, plans)
    timing = pipeline.timing()
    now = app.clocks.billing.now()
    with app.transaction() as session:
        row = subscribe(
            session, app.settings, customer_uid, plan_id, start, now, start_field=start_field
        )
        work = _take_first_charge(session, row, now, timing, plans)
    gateway.bind(work.request.merchant_uid)
    pipeline.send([work], timing)
    if held.reconciles:
        sleep(min(max(held.countdowns), FIRST_LOOKUP_DELAY))
        pipeline.reconcile(work.charge_id)
    status, refusal = _after(app, work, card)
    if refusal is not None:
        raise refusal
    return FirstPayment(work.subscription_id, work.charge_id, str(status))


def site_pg(settings: Settings) -> str | None:
    """``kcp_billing.<site code>`` when BILLING_PORTONE_SITE_CODE is set."""
    return f"kcp_billing.{settings.site_code}" if settings.site_code else None


def _take_first_charge(
    session: Session, row: SubscriptionRow, now: datetime, timing: Timing, plans: CatalogCache
) -> ChargeWork:
    """The first period's charge, claimed and taken in the subscription's own transaction."""
    if row.next_charge_at is None or row.next_charge_at > now:
        raise InvalidInput(
            "card: nothing is due at the start of this subscription (a trial, or a later "
            "start), so there is no first payment to make; subscribe without card and issue "
            "the billing key with the checkout or `billing customers register`"
        )
    claimed = claim_due(session, now, timing.wall, 1, plans, timing.window, only=[row.id])
    works = begin_charges(session, claimed.charge_ids, now, timing, plans).works
    if len(works) != 1:
        raise Conflict(
            "card: the first payment cannot be made now (another payment of this card is "
            "still in progress, or the period costs nothing): nothing was charged"
        )
    return works[0]


def _after(
    app: App, work: ChargeWork, card: CardDetails
) -> tuple[ChargeStatus, BillingError | None]:
    """Act on what the charge became: paid (the key exists now), declined or never sent
    (the subscription ends), or still being looked up (the sweep goes on)."""
    now, wall = app.clocks.billing.now(), app.clocks.system.now()
    with app.transaction() as session:
        charge = session.get(Charge, work.charge_id, with_for_update=True)
        assert charge is not None
        status = ChargeStatus(charge.status)
        if status == ChargeStatus.PAID:
            record_event(
                session,
                BillingKeyRegistered(
                    customer_uid=charge.customer_uid,
                    card_number=card.masked,
                    via="onetime",
                    merchant_uid=charge.merchant_uid,
                ),
                now,
            )
            remember_card(session, charge.customer_uid, None, card.masked, now)
            return status, None
        if status == ChargeStatus.FAILED:
            why = f"first payment declined: {charge.fail_reason or 'declined'}"
            end_unpaid_start(session, work.subscription_id, now, wall, why)
            return status, FirstPaymentDeclined(f"card: {why}")
        if status == ChargeStatus.PENDING:  # not sent, to be sent again: not with this card
            why = "first payment not sent: PortOne could not be reached; nothing was charged"
            end_unpaid_start(session, work.subscription_id, now, wall, why)
            return status, FirstPaymentNotSent(f"card: {why}")
    return status, None
