"""A payment's receipt: the ``receipt_url`` in PortOne's answer to ``GET /payments/{imp_uid}``.

We do not keep it: PortOne is asked each time an operator follows the link."""

from __future__ import annotations

import json
from typing import Any

from billing.errors import BillingError
from billing.portone.answers import Exchange


class NoReceipt(BillingError):
    """PortOne gave no receipt address for the payment."""


def receipt_url(exchange: Exchange, imp_uid: str) -> str:
    if exchange.status != 200:
        reason = exchange.detail or (f"HTTP {exchange.status}" if exchange.status else "no answer")
        raise NoReceipt(f"PortOne did not show payment {imp_uid}: {reason}")
    url = _field(exchange.body, "receipt_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise NoReceipt(f"PortOne's answer for payment {imp_uid} has no receipt address")
    return url


def _field(body: bytes, name: str) -> Any:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    response = document.get("response") if isinstance(document, dict) else None
    return response.get(name) if isinstance(response, dict) else None
