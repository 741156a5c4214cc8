"""The PortOne adapter of the charge path: calls made with a ``PortOneClient`` (or any object
that speaks V1's wire the same way) and answered in domain values.

The services see only ``billing.services.ports.ChargeGateway``: a charge gives a
``ChargeAnswer``, a lookup by merchant_uid a ``Lookup``. What bytes mean is decided here
(``billing.portone.answers``, table-tested), so a second gateway (PortOne V2) is a new
adapter, not a rewrite of the services.
"""

from __future__ import annotations

from typing import Protocol

from billing.domain.answers import ChargeAnswer, Found, Lookup
from billing.domain.charges import ChargeRequest
from billing.portone.answers import (
    Exchange,
    classify_again,
    classify_find_all,
    classify_find_paid,
)


class ChargeWire(Protocol):
    """The V1 calls of the charge path, as HTTP exchanges (``PortOneClient``, or a fake)."""

    def again(self, request: ChargeRequest, send_within: float | None = None) -> Exchange: ...

    def find_paid(self, merchant_uid: str) -> Exchange: ...

    def find_all(self, merchant_uid: str) -> Exchange: ...


class PortOneGateway:
    """Charges and lookups through PortOne V1, classified (thread-safe as its wire is)."""

    def __init__(self, wire: ChargeWire) -> None:
        self.wire = wire

    def charge(self, request: ChargeRequest, send_within: float | None = None) -> ChargeAnswer:
        """``POST /subscribe/payments/again`` (not sent at all after ``send_within`` s)."""
        exchange = self.wire.again(request, send_within=send_within)
        return classify_again(exchange, request.merchant_uid, request.amount)

    def lookup(self, merchant_uid: str, amount: int) -> Lookup:
        """What PortOne holds for the merchant_uid: ``find/{uid}/paid``, then ``findAll``."""
        paid = classify_find_paid(self.wire.find_paid(merchant_uid), merchant_uid, amount)
        if paid.found != Found.NOTHING:
            return paid
        return classify_find_all(self.wire.find_all(merchant_uid), merchant_uid, amount)
