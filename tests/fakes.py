"""In-memory stand-ins for the gateway and the broker, for service tests on real PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from billing.domain.charges import ChargeRequest
from billing.portone.answers import Exchange, Transport


@dataclass
class ListPublisher:
    charges: list[int] = field(default_factory=list)
    reconciles: list[int] = field(default_factory=list)
    notices: list[int] = field(default_factory=list)
    refunds: list[int] = field(default_factory=list)
    countdowns: list[float | None] = field(default_factory=list)
    ledgers: int = 0

    def charge(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self.charges.extend(charge_ids)
        self.countdowns.append(countdown)

    def reconcile(self, charge_ids: Sequence[int], countdown: float | None = None) -> None:
        self.reconciles.extend(charge_ids)
        self.countdowns.append(countdown)

    def notify(self, notice_ids: Sequence[int]) -> None:
        self.notices.extend(notice_ids)

    def refund(self, refund_ids: Sequence[int], countdown: float | None = None) -> None:
        self.refunds.extend(refund_ids)

    def reconcile_ledger(self) -> None:
        self.ledgers += 1

    def take(self) -> tuple[list[int], list[int]]:
        charges, reconciles = self.charges[:], self.reconciles[:]
        self.charges.clear()
        self.reconciles.clear()
        return charges, reconciles


def envelope(code: int = 0, message: str | None = None, response: object = None) -> bytes:
    return json.dumps({"code": code, "message": message, "response": response}).encode()


class FakeGateway:
    """A tiny PortOne: a ledger by merchant_uid and a script of answers per call."""

    def __init__(self) -> None:
        self.ledger: dict[str, list[dict[str, object]]] = {}
        # approve | decline[:reason] | refuse | error_500 | timeout_after_commit | not_sent
        # | timeout_as:<status> (recorded with that PortOne status, then no answer)
        self.script: list[str] = []
        self.sent: list[ChargeRequest] = []
        self.lock = threading.Lock()

    def again(self, request: ChargeRequest, send_within: float | None = None) -> Exchange:
        with self.lock:
            self.sent.append(request)
            action = self.script.pop(0) if self.script else "approve"
            attempts = self.ledger.setdefault(request.merchant_uid, [])
            if any(p["status"] == "paid" for p in attempts):
                return Exchange(200, envelope(-1, "이미 결제완료된 주문번호입니다"))
            if action == "not_sent":
                return Exchange(failure=Transport.NOT_SENT, detail="ConnectError")
            if action == "error_500":
                return Exchange(500, b"")
            if action == "refuse":
                return Exchange(200, envelope(-1, "등록되지 않은 구매자"))
            declined = action.startswith("decline")
            reason = action.partition(":")[2] or "잔액부족"
            status = "failed" if declined else "paid"
            if action.startswith("timeout_as:"):
                status = action.partition(":")[2]
            payment = {
                "imp_uid": f"imps_{len(self.sent):012d}",
                "merchant_uid": request.merchant_uid,
                "amount": request.amount,
                "status": status,
                "fail_reason": reason if declined else None,
                "failed_at": len(self.sent),
                "paid_at": 0,
                "cancel_amount": 0,
            }
            if status == "paid":
                payment["paid_at"] = len(self.sent)
            attempts.append(payment)
            if action == "timeout_after_commit" or action.startswith("timeout_as:"):
                return Exchange(failure=Transport.NO_ANSWER, detail="ReadTimeout")
            return Exchange(200, envelope(response=payment))

    def pay_behind_our_back(self, request: ChargeRequest) -> None:
        """A send our database has forgotten (a restore from a backup): PortOne paid it."""
        self.script.insert(0, "approve")
        self.again(request)
        self.sent.pop()

    def refund_in_console(self, merchant_uid: str) -> None:
        """The merchant refunds a paid payment in PortOne's console."""
        for payment in self.ledger[merchant_uid]:
            if payment["status"] == "paid":
                payment["status"], payment["cancel_amount"] = "cancelled", payment["amount"]

    def find_paid(self, merchant_uid: str) -> Exchange:
        paid = [p for p in self.ledger.get(merchant_uid, []) if p["status"] == "paid"]
        if not paid:
            return Exchange(404, envelope(-1, "결제정보가 없습니다"))
        return Exchange(200, envelope(response=paid[-1]))

    def find_all(self, merchant_uid: str) -> Exchange:
        attempts = self.ledger.get(merchant_uid, [])
        if not attempts:
            return Exchange(404, envelope(-1, "결제정보가 없습니다"))
        return Exchange(
            200,
            envelope(response={"total": len(attempts), "previous": 0, "next": 0, "list": attempts}),
        )

    def payments_by_status(
        self, status: str, since: int, until: int, page: int, limit: int = 1000
    ) -> Exchange:
        """PortOne's ledger by status (the fake has no clock: the window is not applied)."""
        chosen = [p for attempts in self.ledger.values() for p in attempts if p["status"] == status]
        start = (page - 1) * limit
        more = start + limit < len(chosen)
        listing = {
            "total": len(chosen),
            "previous": page - 1,
            "next": page + 1 if more else 0,
            "list": chosen[start : start + limit],
        }
        return Exchange(200, envelope(response=listing))

    def paid(self) -> list[dict[str, object]]:
        return [p for attempts in self.ledger.values() for p in attempts if p["status"] == "paid"]
