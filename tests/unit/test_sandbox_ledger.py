"""The sandbox's ledger: a merchant_uid is never paid twice; cancels respect the balance."""

from __future__ import annotations

import threading

import pytest

from billing.sandbox import SandboxConfig
from billing.sandbox.cards import TEST_CARD
from billing.sandbox.charging import again
from billing.sandbox.ledger import (
    AlreadyPaid,
    CancelRefused,
    CancelTerms,
    ChargeOrder,
    Ledger,
    PaymentStatus,
)
from billing.sandbox.protocol import Request
from billing.sandbox.state import SandboxState

NOW = 1_767_225_600
PAID, FAILED, CANCELLED = PaymentStatus.PAID, PaymentStatus.FAILED, PaymentStatus.CANCELLED


def order(merchant_uid: str = "m1", amount: int = 10_000) -> ChargeOrder:
    return ChargeOrder("c1", merchant_uid, amount, "plan")


def test_a_paid_merchant_uid_is_refused_and_nothing_is_recorded() -> None:
    ledger = Ledger()
    paid = ledger.record(order(), TEST_CARD, PAID, NOW, None)
    with pytest.raises(AlreadyPaid) as caught:
        ledger.record(order(), TEST_CARD, PAID, NOW, None)
    with pytest.raises(AlreadyPaid):
        ledger.record(order(), TEST_CARD, FAILED, NOW, "잔액부족")
    assert caught.value.payment == paid
    assert len(ledger.all()) == 1


def test_a_failed_merchant_uid_may_be_sent_again_with_a_new_imp_uid() -> None:
    ledger = Ledger()
    failed = ledger.record(order(), TEST_CARD, FAILED, NOW, "잔액부족")
    paid = ledger.record(order(), TEST_CARD, PAID, NOW + 5, None)
    assert failed.imp_uid != paid.imp_uid
    assert [p.status for p in ledger.for_merchant_uid("m1")] == [FAILED, PAID]
    assert (failed.failed_at, failed.paid_at, paid.paid_at) == (NOW, 0, NOW + 5)


def test_imp_uids_are_unique_and_shaped_like_portone() -> None:
    ledger = Ledger(seed=1)
    uids = {ledger.record(order(f"m{i}"), TEST_CARD, PAID, NOW, None).imp_uid for i in range(500)}
    assert len(uids) == 500
    assert all(uid.startswith("imps_") and len(uid) == 17 and uid[5:].isdigit() for uid in uids)


def test_seeded_ledgers_give_the_same_imp_uids() -> None:
    a, b = Ledger(seed=5), Ledger(seed=5)
    assert [a.record(order(f"m{i}"), TEST_CARD, PAID, NOW, None).imp_uid for i in range(5)] == [
        b.record(order(f"m{i}"), TEST_CARD, PAID, NOW, None).imp_uid for i in range(5)
    ]


def test_twenty_concurrent_charges_of_one_merchant_uid_pay_exactly_once() -> None:
    state = SandboxState(SandboxConfig(auto_register=True))
    start = threading.Barrier(20)
    answers: list[dict[str, object]] = []
    lock = threading.Lock()

    def charge() -> None:
        body: dict[str, object] = {
            "customer_uid": "c1",
            "merchant_uid": "sub-race-1-1",
            "amount": 9900,
            "name": "plan",
        }
        start.wait()
        reply = again(state, Request({}, {}, body))
        with lock:
            answers.append(reply.body)

    threads = [threading.Thread(target=charge) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = [answer["code"] for answer in answers]
    assert (codes.count(0), codes.count(-1)) == (1, 19)
    assert [p["status"] for p in state.ledger_json()] == ["paid"]
    assert state.stats()["payments"] == {"paid": 1, "failed": 0, "cancelled": 0}


def paid_ledger(amount: int = 10_000) -> tuple[Ledger, str]:
    ledger = Ledger()
    return ledger, ledger.record(order(amount=amount), TEST_CARD, PAID, NOW, None).imp_uid


def test_partial_then_full_cancel() -> None:
    ledger, imp_uid = paid_ledger()
    first = ledger.cancel(imp_uid, None, CancelTerms(3000, None, "부분환불"), NOW + 10)
    assert (first.status, first.cancel_amount, first.balance) == (PAID, 3000, 7000)
    assert first.cancelled_at == NOW + 10
    second = ledger.cancel(None, "m1", CancelTerms(None, 7000, "전액환불"), NOW + 20)
    assert (second.status, second.cancel_amount, second.balance) == (CANCELLED, 10_000, 0)
    assert [c.amount for c in second.cancel_history] == [3000, 7000]
    assert len({c.cancellation_id for c in second.cancel_history}) == 2
    assert ledger.get(imp_uid) == second
    assert ledger.counts() == {"paid": 0, "failed": 0, "cancelled": 1}


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (CancelTerms(10_001, None, ""), "초과"),
        (CancelTerms(None, 9999, ""), "checksum"),
        (CancelTerms(1000, 5000, ""), "checksum"),
    ],
)
def test_cancel_refusals(terms: CancelTerms, message: str) -> None:
    ledger, imp_uid = paid_ledger()
    with pytest.raises(CancelRefused, match=message):
        ledger.cancel(imp_uid, None, terms, NOW)
    assert ledger.get(imp_uid).cancel_amount == 0  # type: ignore[union-attr]


def test_cancel_only_what_is_paid_and_not_yet_refunded() -> None:
    ledger, imp_uid = paid_ledger()
    ledger.cancel(imp_uid, None, CancelTerms(), NOW)
    with pytest.raises(CancelRefused, match="이미"):
        ledger.cancel(imp_uid, None, CancelTerms(), NOW)
    failed = ledger.record(order("m2"), TEST_CARD, FAILED, NOW, "잔액부족")
    with pytest.raises(CancelRefused, match="결제완료"):
        ledger.cancel(failed.imp_uid, None, CancelTerms(), NOW)
    with pytest.raises(CancelRefused, match="존재하지"):
        ledger.cancel("imps_000000000000", None, CancelTerms(), NOW)
    with pytest.raises(CancelRefused, match="존재하지"):
        ledger.cancel(None, "nothing", CancelTerms(), NOW)


def test_cancel_by_merchant_uid_picks_the_paid_attempt() -> None:
    ledger = Ledger()
    ledger.record(order(), TEST_CARD, FAILED, NOW, "잔액부족")
    paid = ledger.record(order(), TEST_CARD, PAID, NOW + 1, None)
    assert ledger.cancel(None, "m1", CancelTerms(), NOW + 2).imp_uid == paid.imp_uid


def test_a_cancelled_merchant_uid_is_not_paid_again() -> None:
    ledger, imp_uid = paid_ledger()
    ledger.cancel(imp_uid, None, CancelTerms(), NOW)
    with pytest.raises(AlreadyPaid):
        ledger.record(order(), TEST_CARD, PAID, NOW, None)


def test_clear() -> None:
    ledger, imp_uid = paid_ledger()
    ledger.clear()
    assert (
        ledger.all() == [] and ledger.get(imp_uid) is None and ledger.for_merchant_uid("m1") == []
    )
