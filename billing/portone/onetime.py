"""The key-in first payment: ``POST /subscribe/payments/onetime`` with ``customer_uid``, which
pays with the card data and issues the customer's billing key with it (the seed's "빌링키 발급
및 최초 결제").

``OnetimeGateway`` is a ``ChargeGateway`` for exactly one charge: it holds the card for the
merchant_uid it is bound to and refuses to send it for any other, so the charge path the worker uses
(take, send, record, reconcile) can run it unchanged. The answer is PortOne's
``PaymentResponse``, the same as ``again``'s, and is classified by the same table; every text
that comes back is scrubbed of the card before anyone sees it. Lookups are those of every
charge (by merchant_uid), so an answer that was lost is reconciled like any other.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from billing.domain.answers import ChargeAnswer, Lookup
from billing.domain.charges import ChargeRequest
from billing.portone.answers import classify_again
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.portone.keys import CardDetails, scrub

PATH = "/subscribe/payments/onetime"


def onetime_body(request: ChargeRequest, card: CardDetails, pg: str | None) -> dict[str, Any]:
    """``again``'s fields (customer_uid, merchant_uid, amount, name, buyer) and the card."""
    card_fields = {"card_number": card.number, "expiry": card.expiry, "birth": card.birth}
    body = {**request.body(), **card_fields}
    if card.pwd_2digit:
        body["pwd_2digit"] = card.pwd_2digit
    if pg:
        body["pg"] = pg
    return body


class OnetimeGateway:
    """Pays one merchant_uid with ``card`` through ``onetime``; looks up like every charge."""

    def __init__(self, client: PortOneClient, card: CardDetails, pg: str | None) -> None:
        self._client = client
        self._card = card
        self._pg = pg
        self._merchant_uid: str | None = None
        self._lookups = PortOneGateway(client)

    def __repr__(self) -> str:
        return f"OnetimeGateway({self._merchant_uid!r}, {self._card!r})"

    def bind(self, merchant_uid: str) -> None:
        """The one charge this card pays (once bound, for good)."""
        if self._merchant_uid is not None:
            raise ValueError("this card is already bound to a charge")
        self._merchant_uid = merchant_uid

    def charge(self, request: ChargeRequest, send_within: float | None = None) -> ChargeAnswer:
        if self._merchant_uid is None or request.merchant_uid != self._merchant_uid:
            raise ValueError("this card pays only the charge it was bound to")
        deadline = None if send_within is None else time.monotonic() + send_within
        body = onetime_body(request, self._card, self._pg)
        exchange = self._client.call("POST", PATH, json=body, deadline=deadline)
        answer = classify_again(exchange, request.merchant_uid, request.amount)
        return replace(answer, reason=scrub(answer.reason, self._card))

    def lookup(self, merchant_uid: str, amount: int) -> Lookup:
        return self._lookups.lookup(merchant_uid, amount)
