"""The ports the charging services use: a gateway to PortOne and a publisher of tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from billing.portone.answers import Exchange
from billing.portone.client import ChargeRequest
from billing.services.delivery import NoticeWork


class Gateway(Protocol):
    def again(self, request: ChargeRequest, send_within: float | None = None) -> Exchange: ...

    def find_paid(self, merchant_uid: str) -> Exchange: ...

    def find_all(self, merchant_uid: str) -> Exchange: ...


class Publisher(Protocol):
    """Enqueues work. A lost or duplicated message is harmless: rows are the truth."""

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def notify(self, notice_ids: Sequence[int]) -> None: ...

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def reconcile_ledger(self) -> None: ...


class NoticeSender(Protocol):
    """Sends one notice on its channel; raises billing.notify.DeliveryError on failure."""

    def send(self, work: NoticeWork) -> None: ...
