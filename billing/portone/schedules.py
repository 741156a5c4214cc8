"""PortOne's hosted scheduler, read and emptied (``billing import portone-schedules``).

``GET /subscribe/payments/schedule/customers/{customer_uid}`` lists a customer's schedules
by the time they are set for (``from <= schedule_at < to``), a page at a time;
``POST /subscribe/payments/unschedule`` with only ``customer_uid`` revokes every schedule of
the customer that has not fired. Answers are read here into ``HostedSchedule`` values; a
page or an unschedule that cannot be read raises ``SchedulesUnreadable`` (nothing is decided
from half a list).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

from billing.domain.takeover import HostedSchedule
from billing.portone.answers import Exchange, read_envelope, same_amount

WINDOW = 90 * 86400  # PortOne lists at most 3 months ("최대 3개월 단위로 조회")
MAX_PAGES = 1000  # a customer with more than 100,000 schedules is not a customer


class SchedulesUnreadable(Exception):
    """PortOne's answer about a customer's schedules could not be read; one line says why."""


class Caller(Protocol):
    """Any authorized V1 call (``PortOneClient.call``)."""

    def call(self, method: str, path: str, **options: Any) -> Exchange: ...


def schedules_of(client: Caller, customer_uid: str, since: int, until: int) -> list[HostedSchedule]:
    """Every schedule of the customer set for [since, until), in the order of their time
    (read in windows of at most ``WINDOW`` seconds: PortOne lists 3 months at a time)."""
    found: dict[str, HostedSchedule] = {}
    for start in range(since, until, WINDOW):
        end = min(until, start + WINDOW)
        for page in _pages(client, customer_uid, start, end):
            fresh = [item for item in page if item.merchant_uid not in found]
            if not fresh:  # an empty page, or one that repeats what was read: the end
                break
            found.update((item.merchant_uid, item) for item in fresh)
    return sorted(found.values(), key=lambda item: (item.schedule_at, item.merchant_uid))


def unschedule_all(client: Caller, customer_uid: str) -> list[str]:
    """Revoke every waiting schedule of the customer; the merchant_uids revoked (none when
    nothing was waiting: PortOne then answers a code other than 0, which is not an error)."""
    path = "/subscribe/payments/unschedule"
    exchange = client.call("POST", path, json={"customer_uid": customer_uid})
    response = _answer(exchange, "the unschedule", empty_ok=True)
    items = response if isinstance(response, list) else []
    return [str(item.get("merchant_uid") or "") for item in items if isinstance(item, dict)]


def _pages(
    client: Caller, customer_uid: str, since: int, until: int
) -> Iterator[list[HostedSchedule]]:
    path = f"/subscribe/payments/schedule/customers/{quote(customer_uid, safe='')}"
    for page in range(1, MAX_PAGES + 1):
        params = {"from": since, "to": until, "page": page}
        exchange = client.call("GET", path, params=params)
        response = _answer(exchange, f"page {page} of the schedules", empty_ok=True)
        items, following = _listing(response)
        yield [_schedule(item) for item in items]
        if following == 0:
            return
    raise SchedulesUnreadable(f"more than {MAX_PAGES} pages of schedules")


def _answer(exchange: Exchange, what: str, *, empty_ok: bool) -> Any:
    """The ``response`` of a successful answer; None for PortOne's "nothing found"."""
    if exchange.failure is not None or exchange.status is None:
        raise SchedulesUnreadable(f"PortOne did not answer {what}: {exchange.detail}")
    envelope = read_envelope(exchange.body)
    if envelope is None:
        raise SchedulesUnreadable(f"PortOne answered {what} with HTTP {exchange.status}, no JSON")
    code, message, response = envelope
    if exchange.status == 200 and code == 0:
        return response
    if empty_ok and exchange.status in (200, 404) and code != 0 and response is None:
        return None  # nothing to list, nothing to revoke
    raise SchedulesUnreadable(
        f"PortOne refused {what}: HTTP {exchange.status}, code {code}: {message}"[:300]
    )


def _listing(response: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The items of one page and the next page number: 0 when PortOne says it is the last,
    None when the answer is a bare list (the document's shape) and only an empty page ends."""
    if response is None:
        return [], 0
    if isinstance(response, list):
        return [item for item in response if isinstance(item, dict)], None
    if isinstance(response, dict) and isinstance(response.get("list"), list):
        following = response.get("next")
        page = following if isinstance(following, int) and not isinstance(following, bool) else 0
        return [item for item in response["list"] if isinstance(item, dict)], page
    raise SchedulesUnreadable("a page of schedules that is neither a list nor a paged list")


def _schedule(item: dict[str, Any]) -> HostedSchedule:
    merchant_uid, at, amount = item.get("merchant_uid"), item.get("schedule_at"), item.get("amount")
    if not isinstance(merchant_uid, str) or not merchant_uid:
        raise SchedulesUnreadable(f"a schedule without a merchant_uid: {str(item)[:120]}")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise SchedulesUnreadable(f"schedule {merchant_uid!r} without a schedule_at")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not same_amount(amount, int(amount))
    ):
        raise SchedulesUnreadable(f"schedule {merchant_uid!r} with amount {amount!r}")
    return HostedSchedule(
        merchant_uid=merchant_uid,
        schedule_at=int(at),
        amount=int(amount),
        status=str(item.get("schedule_status") or ""),
        payment_status=str(item.get("payment_status") or ""),
    )
