"""The sandbox's book of hosted schedules, without HTTP."""

from __future__ import annotations

import pytest

from billing.sandbox.ledger import ChargeOrder
from billing.sandbox.schedules import DuplicateSchedule, Outcome, ScheduleBook, ScheduleStatus


def order(merchant_uid: str, customer_uid: str = "c1") -> ChargeOrder:
    return ChargeOrder(customer_uid, merchant_uid, 9900, "월간")


def book_of(*entries: tuple[str, int, str]) -> ScheduleBook:
    book = ScheduleBook()
    book.add(
        [(order(merchant_uid, customer_uid), at) for merchant_uid, at, customer_uid in entries]
    )
    return book


def test_due_schedules_come_out_oldest_first_and_once() -> None:
    book = book_of(("late", 30, "c1"), ("early", 10, "c1"), ("mid", 20, "c2"), ("later", 99, "c1"))
    assert [s.merchant_uid for s in book.take_due(5)] == []
    assert [s.merchant_uid for s in book.take_due(30)] == ["early", "mid", "late"]
    assert book.take_due(30) == [] and book.next_due_at() == 99


def test_a_merchant_uid_is_scheduled_once_and_a_refused_request_adds_nothing() -> None:
    book = book_of(("s1", 10, "c1"))
    with pytest.raises(DuplicateSchedule):
        book.add([(order("s2"), 10), (order("s1"), 20)])
    with pytest.raises(DuplicateSchedule):
        book.add([(order("s3"), 10), (order("s3"), 20)])
    assert book.get("s2") is None and book.get("s3") is None


@pytest.mark.parametrize(
    ("customer_uid", "merchant_uids", "revoked"),
    [
        ("c1", [], ["a", "b"]),  # all of the customer's scheduled ones
        ("c1", ["b", "x"], ["b"]),  # unknown merchant_uids are skipped
        ("c2", ["a"], []),  # not the customer's
        (None, ["a", "c"], ["a", "c"]),  # no customer: by merchant_uid
        (None, [], []),  # neither: nothing (the endpoint refuses it)
        ("c1", ["done"], []),  # executed already
    ],
)
def test_revoke(customer_uid: str | None, merchant_uids: list[str], revoked: list[str]) -> None:
    book = book_of(("a", 10, "c1"), ("b", 20, "c1"), ("c", 30, "c2"), ("done", 1, "c1"))
    (done,) = book.take_due(1)
    book.execute(done.merchant_uid, Outcome("paid", "imps_1"), 1)
    answered = book.revoke(customer_uid, merchant_uids, 5)
    assert [s.merchant_uid for s in answered] == revoked
    assert all(s.status is ScheduleStatus.REVOKED and s.revoked_at == 5 for s in answered)
    assert [s.merchant_uid for s in book.take_due(100)] == [
        m for m in ("a", "b", "c") if m not in revoked
    ]


def test_between_is_from_inclusive_to_exclusive_with_filters() -> None:
    book = book_of(("a", 10, "c1"), ("b", 20, "c2"), ("c", 30, "c1"))
    assert [s.merchant_uid for s in book.between(10, 30)] == ["a", "b"]
    assert [s.merchant_uid for s in book.between(0, 99, customer_uid="c1")] == ["a", "c"]
    book.revoke("c1", ["c"], 0)
    assert [s.merchant_uid for s in book.between(0, 99, ScheduleStatus.REVOKED)] == ["c"]
