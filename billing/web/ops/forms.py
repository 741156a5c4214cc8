"""The console's form posts: an urlencoded body of bounded size, and the checks of its
fields, each failing with one line that says what to type instead."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from billing.errors import InvalidInput

MAX_BODY = 16_384
REASON_MAX = 200  # refunds.reason, and what an event's reason should hold
MAX_KRW = 10**12
DIGITS = re.compile("[0-9]{1,13}")


class BodyTooLarge(Exception):
    """The form's body is longer than ``MAX_BODY``."""


@dataclass(frozen=True)
class Form:
    fields: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def reason(self) -> str:
        """The reason given, spaces collapsed; required and at most ``REASON_MAX`` long."""
        reason = " ".join(self.get("reason").split())
        if not reason:
            raise InvalidInput("reason: say why (it is kept in the event log with your name)")
        if len(reason) > REASON_MAX:
            raise InvalidInput(f"reason: at most {REASON_MAX} characters, got {len(reason)}")
        return reason

    def amount(self) -> int | None:
        """KRW to refund; None (empty) for everything left."""
        text = self.get("amount").strip().replace(",", "")
        if not text:
            return None
        if not DIGITS.fullmatch(text) or not 0 < int(text) <= MAX_KRW:
            raise InvalidInput(
                f"amount: a whole number of KRW above 0, such as 5000, got {text[:20]!r} "
                "(leave it empty to refund all that is left)"
            )
        return int(text)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.get(name)
        if value not in allowed:
            raise InvalidInput(f"{name}: one of {', '.join(allowed)}, got {value[:20]!r}")
        return value


async def read_form(request: Request) -> Form:
    """The urlencoded fields of the body (a field given twice: the first)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BodyTooLarge
    text = body.decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        fields.setdefault(name, value)
    return Form(fields)
