"""The sandbox's book of payments: what was charged, declined and refunded, in creation order.

One lock guards every read-modify-write, so "a merchant_uid is never paid twice" holds under
any number of concurrent ``again`` calls for the same merchant_uid. Payments are frozen
values; a cancel replaces the stored value with a new one.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from enum import StrEnum

from billing.sandbox.cards import CardFace


class PaymentStatus(StrEnum):
    READY = "ready"
    PAID = "paid"
    CANCELLED = "cancelled"
    FAILED = "failed"


MONEY_MOVED = frozenset({PaymentStatus.PAID, PaymentStatus.CANCELLED})
NET_CANCEL = "망취소: 승인 응답을 받지 못해 PG가 취소했습니다"


@dataclass(frozen=True, slots=True)
class Buyer:
    """The buyer_* fields of an ``again`` call, echoed on the payment."""

    name: str | None = None
    email: str | None = None
    tel: str | None = None
    addr: str | None = None
    postcode: str | None = None


NO_BUYER = Buyer()


@dataclass(frozen=True, slots=True)
class ChargeOrder:
    """A validated ``again`` request: what the merchant asked to charge."""

    customer_uid: str
    merchant_uid: str
    amount: int
    name: str
    buyer: Buyer = NO_BUYER
    card_quota: int = 0
    custom_data: str | None = None
    notice_url: str | None = None
    customer_uid_usage: str = "payment"  # "issue": a onetime payment that issued the key


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """One (partial or full) cancel of a payment."""

    cancellation_id: str
    amount: int
    reason: str
    cancelled_at: int


@dataclass(frozen=True, slots=True)
class Payment:
    """One attempt to charge a billing key, as PortOne keeps it."""

    seq: int
    imp_uid: str
    order: ChargeOrder
    card: CardFace
    status: PaymentStatus
    started_at: int
    fail_reason: str | None = None
    cancel_amount: int = 0
    cancel_history: tuple[CancelRecord, ...] = ()
    net_cancelled: bool = False  # cancelled by the PG before it was ever paid: no money moved

    @property
    def merchant_uid(self) -> str:
        return self.order.merchant_uid

    @property
    def moved_money(self) -> bool:
        """Paid, or paid and then refunded: the merchant_uid cannot be paid again."""
        return self.status in MONEY_MOVED and not self.net_cancelled

    @property
    def paid_at(self) -> int:
        return self.started_at if self.moved_money else 0

    @property
    def failed_at(self) -> int:
        return self.started_at if self.status is PaymentStatus.FAILED else 0

    @property
    def cancelled_at(self) -> int:
        return self.cancel_history[-1].cancelled_at if self.cancel_history else 0

    @property
    def updated_at(self) -> int:
        return max(self.started_at, self.cancelled_at)

    @property
    def balance(self) -> int:
        """What may still be refunded."""
        return self.order.amount - self.cancel_amount


@dataclass(frozen=True, slots=True)
class CancelTerms:
    """The money part of a cancel: amount (None = all that is left), checksum, reason."""

    amount: int | None = None
    checksum: int | None = None
    reason: str = ""


class AlreadyPaid(Exception):
    """The merchant_uid already has a payment that moved money; nothing was recorded."""

    def __init__(self, payment: Payment) -> None:
        super().__init__(payment.merchant_uid)
        self.payment = payment


class CancelRefused(Exception):
    """The cancel cannot be done; the message says why (PortOne code -1)."""


class Ledger:
    """Owns every payment; thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._digits = random.Random(seed)
        self._payments: list[Payment] = []
        self._by_imp_uid: dict[str, int] = {}
        self._by_merchant_uid: dict[str, list[int]] = {}

    def record(
        self,
        order: ChargeOrder,
        card: CardFace,
        status: PaymentStatus,
        now: int,
        reason: str | None,
    ) -> Payment:
        """Record one attempt; AlreadyPaid when money already moved for its merchant_uid."""
        with self._lock:
            earlier = self._by_merchant_uid.setdefault(order.merchant_uid, [])
            for index in earlier:
                if self._payments[index].moved_money:
                    raise AlreadyPaid(self._payments[index])
            seq = len(self._payments)
            payment = Payment(seq, self._new_imp_uid(), order, card, status, now, reason)
            if status is PaymentStatus.CANCELLED:  # a net-cancel: approved, then voided by the PG
                record = CancelRecord(f"{payment.imp_uid}_c1", order.amount, NET_CANCEL, now)
                payment = replace(
                    payment,
                    cancel_amount=order.amount,
                    cancel_history=(record,),
                    net_cancelled=True,
                )
            self._payments.append(payment)
            self._by_imp_uid[payment.imp_uid] = seq
            earlier.append(seq)
            return payment

    def _new_imp_uid(self) -> str:
        while True:
            imp_uid = f"imps_{self._digits.randrange(10**12):012d}"
            if imp_uid not in self._by_imp_uid:
                return imp_uid

    def get(self, imp_uid: str) -> Payment | None:
        with self._lock:
            index = self._by_imp_uid.get(imp_uid)
            return None if index is None else self._payments[index]

    def for_merchant_uid(self, merchant_uid: str) -> list[Payment]:
        """Every attempt for ``merchant_uid``, oldest first."""
        with self._lock:
            return [self._payments[i] for i in self._by_merchant_uid.get(merchant_uid, ())]

    def all(self) -> list[Payment]:
        with self._lock:
            return list(self._payments)

    def counts(self) -> dict[str, int]:
        """How many payments are paid, failed and cancelled now."""
        counts = {"paid": 0, "failed": 0, "cancelled": 0}
        for payment in self.all():
            if payment.status.value in counts:
                counts[payment.status.value] += 1
        return counts

    def clear(self) -> None:
        with self._lock:
            self._payments.clear()
            self._by_imp_uid.clear()
            self._by_merchant_uid.clear()
            self._digits = random.Random(self._seed)

    def cancel(
        self,
        imp_uid: str | None,
        merchant_uid: str | None,
        cancel: CancelTerms,
        now: int,
    ) -> Payment:
        """Refund ``cancel.amount`` (the whole balance when None) of a paid payment."""
        with self._lock:
            index = self._cancel_target(imp_uid, merchant_uid)
            payment = self._payments[index]
            amount = _refundable(payment, cancel)
            record = CancelRecord(
                cancellation_id=f"{payment.imp_uid}_c{len(payment.cancel_history) + 1}",
                amount=amount,
                reason=cancel.reason,
                cancelled_at=now,
            )
            cancelled = payment.cancel_amount + amount
            status = (
                PaymentStatus.CANCELLED if cancelled == payment.order.amount else payment.status
            )
            updated = replace(
                payment,
                status=status,
                cancel_amount=cancelled,
                cancel_history=(*payment.cancel_history, record),
            )
            self._payments[index] = updated
            return updated

    def _cancel_target(self, imp_uid: str | None, merchant_uid: str | None) -> int:
        """imp_uid wins; by merchant_uid, the attempt that moved money, else the latest."""
        if imp_uid:
            index = self._by_imp_uid.get(imp_uid)
            if index is None:
                raise CancelRefused(f"존재하지 않는 결제정보입니다 (imp_uid {imp_uid})")
            return index
        attempts = self._by_merchant_uid.get(merchant_uid or "", [])
        if not attempts:
            raise CancelRefused(f"존재하지 않는 결제정보입니다 (merchant_uid {merchant_uid})")
        moved = [i for i in attempts if self._payments[i].moved_money]
        return (moved or attempts)[-1]


def _refundable(payment: Payment, cancel: CancelTerms) -> int:
    """The amount this cancel refunds, or CancelRefused."""
    if payment.status is PaymentStatus.CANCELLED:
        raise CancelRefused("이미 전액취소된 주문입니다 (already fully cancelled)")
    if payment.status is not PaymentStatus.PAID:
        raise CancelRefused(f"결제완료 상태가 아닌 결제건은 취소할 수 없습니다 ({payment.status})")
    if cancel.checksum is not None and cancel.checksum != payment.balance:
        raise CancelRefused(
            f"checksum이 취소가능금액과 다릅니다 (checksum {cancel.checksum}, "
            f"refundable {payment.balance})"
        )
    amount = payment.balance if cancel.amount is None else cancel.amount
    if amount > payment.balance:
        raise CancelRefused(
            f"취소가능금액을 초과하였습니다 (amount {amount}, refundable {payment.balance})"
        )
    return amount
