"""The ports the services use: PortOne (in domain values), the publisher of tasks, the
notice sender. Adapters: ``billing.portone.gateway`` (PortOne V1), ``billing.broker``
(Celery), ``billing.notify`` (log, webhook, e-mail)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from billing.domain.answers import ChargeAnswer, Lookup
from billing.domain.charges import ChargeRequest
from billing.services.delivery import NoticeWork


class ChargeGateway(Protocol):
    """Charges and lookups by merchant_uid, answered in domain values."""

    def charge(self, request: ChargeRequest, send_within: float | None = None) -> ChargeAnswer:
        """Send one charge; not sent at all once ``send_within`` seconds have passed."""
        ...

    def lookup(self, merchant_uid: str, amount: int) -> Lookup:
        """What PortOne holds for the merchant_uid."""
        ...


class Publisher(Protocol):
    """Enqueues work. A lost or duplicated message is harmless: rows are the truth."""

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def notify(self, notice_ids: Sequence[int]) -> None: ...

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def reconcile_ledger(self) -> None: ...


class DeliveryError(Exception):
    """A notice was not delivered (the receiver failed, or the channel cannot be used); the
    message says why in one line. It is sent again later, with the same event id."""


class NoticeSender(Protocol):
    """Sends one notice on its channel; raises DeliveryError on failure."""

    def send(self, work: NoticeWork) -> None: ...
