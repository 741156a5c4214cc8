"""Request fields: decoding JSON and form bodies, and checking each endpoint's parameters
against the limits of the PortOne V1 OpenAPI document. Every violation is InvalidRequest with
a message that names the field and why."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from billing.sandbox.cards import CardFace, card_face, check_birth, check_expiry, check_password
from billing.sandbox.customers import Contact
from billing.sandbox.ledger import Buyer, CancelTerms, ChargeOrder, PaymentStatus
from billing.sandbox.protocol import InvalidRequest
from billing.sandbox.schedules import ScheduleStatus

Fields = Mapping[str, object]

CUSTOMER_UID_MAX = 80
MERCHANT_UID_MAX = 40
NAME_MAX = 40
BUYER_LIMITS = {"name": 16, "email": 64, "tel": 16, "addr": 128, "postcode": 8}
CONTACT_LIMITS = {"name": 20, "tel": 20, "email": 200, "addr": 200, "postcode": 8}
QUOTA_MIN_AMOUNT = 50_000
SORTINGS = frozenset({"-started", "started", "-paid", "paid", "-updated", "updated"})
STATUSES = frozenset(status.value for status in PaymentStatus)
PAGE_LIMIT_MAX = 1000
NUMBER_MAX = 10**15
SCHEDULE_STATUSES = frozenset(status.value for status in ScheduleStatus)
SCHEDULE_WINDOW_MAX = 92 * 86400  # "최대 3개월 단위로 조회가 가능합니다"
SCHEDULE_SORTINGS = frozenset({"scheduled", "-scheduled"})


def decode_body(body: bytes, content_type: str) -> dict[str, object]:
    """A JSON object or a form body as a dict; an empty body is ``{}``."""
    if not body.strip():
        return {}
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded" or (not kind and body[:1] != b"{"):
        return _decode_form(body)
    if kind in ("application/json", "") or kind.endswith("+json"):
        return _decode_json(body)
    raise InvalidRequest(f"unsupported Content-Type {kind!r} (send JSON or a form)")


def decode_control_body(body: bytes, content_type: str) -> dict[str, object]:
    """The control endpoints' body: one that opens with ``{`` is JSON whatever its content
    type says (``curl -d '{...}'`` labels it a form)."""
    if body.lstrip()[:1] == b"{":
        return _decode_json(body)
    return decode_body(body, content_type)


def _decode_json(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the JSON body must be an object")
    return value


def _decode_form(body: bytes) -> dict[str, object]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed form body: {exc}") from None
    decoded: dict[str, object] = {}
    for name, value in pairs:  # ``name[]`` repeated: every value, as a list
        earlier = decoded.get(name, [])
        decoded[name] = (
            [*earlier, value] if name.endswith("[]") and isinstance(earlier, list) else value
        )
    return decoded


def text(fields: Fields, name: str, limit: int | None = None, required: bool = False) -> str | None:
    """A string field (at most ``limit`` characters); None when absent and optional."""
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name}: required")
        return None if value is None else ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a string")
    if limit is not None and len(value) > limit:
        raise InvalidRequest(f"{name}: at most {limit} characters (got {len(value)})")
    return value


def required_text(fields: Fields, name: str, limit: int | None = None) -> str:
    value = text(fields, name, limit, required=True)
    assert value is not None
    return value


def whole_number(fields: Fields, name: str) -> int | None:
    """An integer given as a JSON number or a string of digits; fractions are refused."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"{name}: must be a number")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidRequest(f"{name}: must be a number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidRequest(f"{name}: must be a whole number (KRW has no fractions)")
    if abs(number) > NUMBER_MAX:
        raise InvalidRequest(f"{name}: out of range")
    return int(number)


def krw(fields: Fields, name: str, required: bool = False) -> int | None:
    """A positive integer amount of KRW."""
    amount = whole_number(fields, name)
    if amount is None and required:
        raise InvalidRequest(f"{name}: required")
    if amount is not None and amount <= 0:
        raise InvalidRequest(f"{name}: must be greater than 0")
    return amount


def customer_uid(value: str) -> str:
    """A customer_uid from a path: 1 to 80 characters."""
    return required_text({"customer_uid": value}, "customer_uid", CUSTOMER_UID_MAX)


def charge_order(fields: Fields) -> ChargeOrder:
    """The parameters of ``POST /subscribe/payments/again``."""
    amount = krw(fields, "amount", required=True)
    assert amount is not None
    currency = text(fields, "currency")
    if currency and currency.upper() != "KRW":
        raise InvalidRequest(f"currency: the sandbox charges KRW only (got {currency!r})")
    return ChargeOrder(
        customer_uid=required_text(fields, "customer_uid", CUSTOMER_UID_MAX),
        merchant_uid=required_text(fields, "merchant_uid", MERCHANT_UID_MAX),
        amount=amount,
        name=required_text(fields, "name", NAME_MAX),
        buyer=Buyer(**{key: text(fields, f"buyer_{key}", n) for key, n in BUYER_LIMITS.items()}),
        card_quota=card_quota(fields, amount),
        custom_data=custom_data(fields),
        notice_url=text(fields, "notice_url"),
    )


def onetime_order(fields: Fields) -> ChargeOrder:
    """The payment parameters of ``POST /subscribe/payments/onetime`` (customer_uid is
    optional there: with it, the card's billing key is issued too)."""
    given = dict(fields)
    customer_uid = text(fields, "customer_uid", CUSTOMER_UID_MAX)
    given["customer_uid"] = customer_uid or "-"
    order = charge_order(given)
    return replace(order, customer_uid=customer_uid or "", customer_uid_usage="issue")


def card_quota(fields: Fields, amount: int) -> int:
    """Installments: 0 (lump sum), or 2 and more for amounts of at least 50,000 KRW."""
    quota = whole_number(fields, "card_quota")
    if not quota:
        return 0
    if quota < 2:
        raise InvalidRequest(f"card_quota: 0 (lump sum) or at least 2 months (got {quota})")
    if amount < QUOTA_MIN_AMOUNT:
        raise InvalidRequest(
            f"card_quota: installments only for amounts of {QUOTA_MIN_AMOUNT} KRW or more"
        )
    return quota


def custom_data(fields: Fields) -> str | None:
    """A string, or a JSON value that is kept as its JSON text."""
    value = fields.get("custom_data")
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def cancel_terms(fields: Fields) -> tuple[str | None, str | None, CancelTerms]:
    """The parameters of ``POST /payments/cancel``: (imp_uid, merchant_uid, terms)."""
    imp_uid = text(fields, "imp_uid")
    merchant_uid = text(fields, "merchant_uid", MERCHANT_UID_MAX)
    if not imp_uid and not merchant_uid:
        raise InvalidRequest("imp_uid or merchant_uid: one of them is required")
    checksum = whole_number(fields, "checksum")
    if checksum is not None and checksum < 0:
        raise InvalidRequest("checksum: must not be negative")
    amount = whole_number(fields, "amount")
    if amount is not None and amount < 0:
        raise InvalidRequest("amount: must not be negative")
    # PortOne's document: 0 or no amount cancels everything that is left
    terms = CancelTerms(amount or None, checksum, text(fields, "reason") or "")
    return imp_uid, merchant_uid, terms


def payment_status(value: str | None) -> PaymentStatus | None:
    """The optional ``{payment_status}`` path segment."""
    if not value:
        return None
    if value not in STATUSES:
        raise InvalidRequest(f"payment_status: one of {', '.join(sorted(STATUSES))}")
    return PaymentStatus(value)


def sorting(query: Fields) -> str:
    value = text(query, "sorting") or "-started"
    if value not in SORTINGS:
        raise InvalidRequest(f"sorting: one of {', '.join(sorted(SORTINGS))}")
    return value


def paging(query: Fields) -> tuple[int, int]:
    """(page, limit) of findAll: page from 1, limit 1..1000 (default 20)."""
    page_number = page(query)
    limit = whole_number(query, "limit")
    limit = 20 if limit is None else limit
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidRequest(f"limit: between 1 and {PAGE_LIMIT_MAX}")
    return page_number, limit


def page(query: Fields) -> int:
    """``page``: from 1 (the default)."""
    number = whole_number(query, "page")
    if number is not None and number < 1:
        raise InvalidRequest("page: must be 1 or more")
    return 1 if number is None else number


def registration(fields: Fields, today: date) -> tuple[CardFace, Contact]:
    """The parameters of ``POST /subscribe/customers/{customer_uid}``.

    Missing or over-long fields are InvalidRequest (HTTP 400); a card that cannot get a key is
    CardRefused (code -1). The answer holds only the masked card: the full number, the birth
    date and the password digits go no further than this function.
    """
    number = required_text(fields, "card_number", 40)
    expiry = required_text(fields, "expiry", 20)
    birth = text(fields, "birth", 20)
    password = text(fields, "pwd_2digit", 20)
    contact = Contact(
        **{key: text(fields, f"customer_{key}", n) for key, n in CONTACT_LIMITS.items()}
    )
    face = card_face(number)
    check_expiry(expiry, today)
    if birth:
        check_birth(birth)
    if password:
        check_password(password)
    return face, contact


def schedule_order(fields: Fields, customer_uid: str, contact: Contact) -> tuple[ChargeOrder, int]:
    """One entry of ``schedules[]`` (a ``ScheduleAnnotation``): the order and its
    schedule_at. ``name`` may be left out (PortOne's own client does); missing buyer_* fields
    are the key's customer_* ones, as PortOne's document says."""
    if not isinstance(fields, Mapping):
        raise InvalidRequest("schedules: each entry must be an object")
    schedule_at = whole_number(fields, "schedule_at")
    if schedule_at is None or schedule_at < 0:
        raise InvalidRequest("schedules[].schedule_at: required (unix seconds)")
    name = text(fields, "name", NAME_MAX) or ""
    order = charge_order({**fields, "customer_uid": customer_uid, "name": name or "-"})
    buyer = Buyer(
        **{
            k: getattr(order.buyer, k) or _cut(getattr(contact, k), n)
            for k, n in BUYER_LIMITS.items()
        }
    )
    return replace(order, name=name, buyer=buyer), schedule_at


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def schedule_entries(fields: Fields) -> list[Mapping[str, object]]:
    """``schedules``: a JSON array, its JSON text (a form field), or form fields named
    ``schedules[0][merchant_uid]``."""
    value = fields.get("schedules")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidRequest("schedules: a JSON array of schedules") from None
    if value is None:
        value = _bracketed(fields, "schedules")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("schedules: required (a non-empty array)")
    return value


def _bracketed(fields: Fields, name: str) -> list[dict[str, object]]:
    """Form fields ``name[i][key]`` as a list of objects, in the order of i."""
    entries: dict[int, dict[str, object]] = {}
    for key, value in fields.items():
        index, _, rest = key.removeprefix(f"{name}[").partition("][")
        if key.startswith(f"{name}[") and index.isdigit() and rest.endswith("]"):
            entries.setdefault(int(index), {})[rest[:-1]] = value
    return [entries[i] for i in sorted(entries)]


def merchant_uids(fields: Fields) -> list[str]:
    """``merchant_uid`` of unschedule: an array, one string, or ``merchant_uid[]`` fields."""
    value = fields.get("merchant_uid", fields.get("merchant_uid[]"))
    if value is None:
        value = [v for k, v in fields.items() if k.startswith("merchant_uid[")]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise InvalidRequest("merchant_uid: an array of merchant_uids")
    return list(dict.fromkeys(values))


def schedule_status(query: Fields, *names: str) -> ScheduleStatus | None:
    """The optional status filter (the document spells it ``schedule_status`` or
    ``schedule-status`` depending on the endpoint)."""
    value = next((query[name] for name in names if query.get(name)), None)
    if value is None:
        return None
    if value not in SCHEDULE_STATUSES:
        raise InvalidRequest(f"schedule_status: one of {', '.join(sorted(SCHEDULE_STATUSES))}")
    return ScheduleStatus(value)


def schedule_window(query: Fields, since_name: str, until_name: str) -> tuple[int, int]:
    """(since, until) of a schedule lookup, both required; since <= schedule_at < until, at
    most 3 months apart."""
    since, until = whole_number(query, since_name), whole_number(query, until_name)
    if since is None or until is None:
        raise InvalidRequest(f"{since_name} and {until_name}: required (unix seconds)")
    if until <= since:
        raise InvalidRequest(f"{until_name}: must be after {since_name}")
    if until - since > SCHEDULE_WINDOW_MAX:
        raise InvalidRequest(f"{since_name}..{until_name}: at most 3 months (92 days) apart")
    return since, until


def schedule_sorting(query: Fields) -> bool:
    """``sorting``: True for oldest first (``scheduled``); the default is newest first."""
    value = text(query, "sorting") or "-scheduled"
    if value not in SCHEDULE_SORTINGS:
        raise InvalidRequest(f"sorting: one of {', '.join(sorted(SCHEDULE_SORTINGS))}")
    return value == "scheduled"
