"""The sandbox's endpoints through ``dispatch`` (no sockets): answers, precedence, controls."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest

from billing.sandbox import SandboxConfig
from billing.sandbox.protocol import Delivery, Reply
from billing.sandbox.routes import RawRequest, dispatch
from billing.sandbox.state import SandboxState


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Sandbox:
    """A SandboxState with a fake clock and a token, and short-hands to call it. Without a
    ``config`` it auto-registers (these tests charge customer_uids they never registered)."""

    def __init__(self, config: SandboxConfig | None = None, **changes: Any) -> None:
        self.clock = Clock()
        settings = replace(config or SandboxConfig(auto_register=True), **changes)
        self.state = SandboxState(settings, self.clock, self.clock.sleep)
        self.token: str | None = self.state.tokens.issue().access_token

    def call(self, method: str, target: str, body: object = None, form: bool = False) -> Reply:
        if body is None:
            raw, kind = b"", ""
        elif form:
            raw, kind = urlencode(body).encode(), "application/x-www-form-urlencoded"  # type: ignore[arg-type]
        else:
            raw, kind = json.dumps(body).encode(), "application/json"
        return dispatch(self.state, RawRequest(method, target, raw, kind, self.token))

    def again(self, merchant_uid: str = "m1", customer_uid: str = "c1", **extra: object) -> Reply:
        body = {"customer_uid": customer_uid, "merchant_uid": merchant_uid, "amount": 9900}
        return self.call("POST", "/subscribe/payments/again", {**body, "name": "plan", **extra})


def response(reply: Reply) -> dict[str, object]:
    assert reply.status == 200, reply.body
    assert reply.body["code"] == 0, reply.body
    value = reply.body["response"]
    assert isinstance(value, dict)
    return value


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox()


def test_get_token(sandbox: Sandbox) -> None:
    good = {"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}
    token = response(sandbox.call("POST", "/users/getToken", good))
    assert token["access_token"] == sandbox.token
    assert token["expired_at"] == token["now"] + 1800  # type: ignore[operator]
    assert response(sandbox.call("POST", "/users/getToken", good, form=True)) == token
    bad = sandbox.call("POST", "/users/getToken", {**good, "imp_secret": "nope"})
    assert (bad.status, bad.body) == (
        401,
        {"code": -1, "message": bad.body["message"], "response": None},
    )
    assert sandbox.call("POST", "/users/getToken", {}).status == 401


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_portone_endpoints_need_a_valid_token(sandbox: Sandbox, token: str | None) -> None:
    sandbox.token = token
    for method, target in [
        ("POST", "/subscribe/payments/again"),
        ("GET", "/payments/find/m1"),
        ("GET", "/payments/findAll/m1"),
        ("GET", "/payments/imps_1"),
        ("GET", "/subscribe/customers/c1"),
        ("POST", "/payments/cancel"),
    ]:
        reply = sandbox.call(method, target, {})
        assert (reply.status, reply.body) == (
            401,
            {"code": -1, "message": "Unauthorized", "response": None},
        )
    assert sandbox.state.ledger.all() == []


def test_expired_tokens_answer_401(sandbox: Sandbox) -> None:
    sandbox.clock.now += 1800
    assert sandbox.again().status == 401
    sandbox.token = sandbox.state.tokens.issue().access_token
    assert sandbox.again().status == 200
    sandbox.state.expire_tokens()
    assert sandbox.again("m2").status == 401


def test_approve(sandbox: Sandbox) -> None:
    payment = response(sandbox.again(buyer_name="홍길동", custom_data="x"))
    assert payment["status"] == "paid"
    assert payment["paid_at"] == payment["started_at"] == int(sandbox.clock.now)
    assert (payment["failed_at"], payment["cancelled_at"], payment["fail_reason"]) == (0, 0, None)
    assert (payment["buyer_name"], payment["custom_data"], payment["amount"]) == (
        "홍길동",
        "x",
        9900,
    )
    assert payment["customer_uid_usage"] == "payment" and payment["pg_provider"] == "kcp_billing"


def test_paid_twice_is_refused(sandbox: Sandbox) -> None:
    response(sandbox.again())
    twice = sandbox.again()
    assert (twice.status, twice.body["code"]) == (200, -1)
    assert "이미" in str(twice.body["message"])
    assert len(sandbox.state.ledger.all()) == 1


def test_decline_then_retry_the_same_merchant_uid(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["decline", "decline:분실신고 카드"])
    first, second = response(sandbox.again()), response(sandbox.again())
    assert (first["status"], first["fail_reason"]) == ("failed", "잔액부족")
    assert (second["fail_reason"], second["failed_at"], second["paid_at"]) == (
        "분실신고 카드",
        int(sandbox.clock.now),
        0,
    )
    third = response(sandbox.again())
    assert third["status"] == "paid" and third["imp_uid"] not in (
        first["imp_uid"],
        second["imp_uid"],
    )


@pytest.mark.parametrize(
    ("behavior", "status", "message"),
    [
        ("refuse", 200, "거절"),
        ("refuse:한도초과", 200, "한도초과"),
        ("unknown_customer", 200, "customer_uid"),
        ("error_500", 500, "sandbox"),
        ("token_expired", 401, "Unauthorized"),
    ],
)
def test_behaviors_that_record_nothing(
    sandbox: Sandbox, behavior: str, status: int, message: str
) -> None:
    sandbox.state.script("c1", [behavior])
    reply = sandbox.again()
    assert reply.status == status
    assert reply.body["code"] == -1 and reply.body["response"] is None
    assert message in str(reply.body["message"])
    assert sandbox.state.ledger.all() == []
    assert sandbox.state.stats()["faults"] == {behavior.partition(":")[0]: 1}


def test_token_expired_revokes_the_token(sandbox: Sandbox) -> None:
    sandbox.state.script(None, ["token_expired"])
    old = sandbox.token
    assert sandbox.again().status == 401
    assert sandbox.again().status == 401  # that token is dead now
    sandbox.token = sandbox.state.tokens.issue().access_token
    assert sandbox.token != old
    assert response(sandbox.again())["status"] == "paid"


@pytest.mark.parametrize(
    ("behavior", "delivery"),
    [("commit_then_timeout", Delivery.HANG), ("commit_then_reset", Delivery.RESET)],
)
def test_commit_then_fault(sandbox: Sandbox, behavior: str, delivery: Delivery) -> None:
    sandbox.state.script("c1", [behavior])
    reply = sandbox.again()
    assert reply.delivery is delivery
    assert [p["status"] for p in sandbox.state.ledger_json()] == ["paid"]


def test_already_paid_pays_and_answers_portones_refusal(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["already_paid"])
    reply = sandbox.again()
    assert (reply.status, reply.body["code"], reply.delivery) == (200, -1, Delivery.ANSWER)
    assert "이미 결제가 완료된" in str(reply.body["message"])
    [payment] = sandbox.state.ledger_json()
    assert (payment["status"], payment["paid_at"]) == ("paid", sandbox.clock.now)


def test_net_cancel_moves_no_money_and_loses_the_answer(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["net_cancel"])
    assert sandbox.again().delivery is Delivery.HANG
    [payment] = sandbox.state.ledger_json()
    assert (payment["status"], payment["paid_at"], payment["cancel_amount"]) == (
        "cancelled",
        0,
        9900,
    )
    assert "망취소" in str(payment["cancel_reason"])
    assert response(sandbox.again())["status"] == "paid"  # nothing was paid: it may be sent again


def test_paid_then_refunded_in_the_console_loses_the_answer(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["paid_then_refunded"])
    assert sandbox.again().delivery is Delivery.HANG
    [payment] = sandbox.state.ledger_json()
    assert payment["status"] == "cancelled" and payment["paid_at"] == sandbox.clock.now
    assert [c["amount"] for c in payment["cancel_history"]] == [9900]  # type: ignore[union-attr]
    again = sandbox.again()
    assert again.body["code"] == -1  # money moved once: never paid again


def test_latency_behavior_and_configured_latency(sandbox: Sandbox) -> None:
    sandbox.state.set_default("c1", "decline:X")
    sandbox.state.script("c1", ["latency:250"])
    assert response(sandbox.again())["fail_reason"] == "X"
    assert sandbox.clock.slept == [0.25]
    sandbox.state.set_latency(300)
    sandbox.call("GET", "/payments/find/m1")
    sandbox.call("POST", "/__sandbox__/stats")
    assert sandbox.clock.slept == [0.25, 0.3]  # admin calls have no latency


def test_precedence_end_to_end(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["decline:own"])
    sandbox.state.script(None, ["decline:global"])
    sandbox.state.set_default("c1", "decline:default")
    sandbox.state.set_default(None, "decline:global-default")
    reasons = [response(sandbox.again(f"m{i}"))["fail_reason"] for i in range(3)]
    assert reasons == ["own", "global", "default"]
    assert response(sandbox.again("m9", customer_uid="c2"))["fail_reason"] == "global-default"


def test_seeded_faults_over_dispatch_are_reproducible() -> None:
    def run() -> list[object]:
        sandbox = Sandbox(seed=3)
        sandbox.state.set_faults({"decline": 0.3, "error_500": 0.2}, seed=7)
        return [sandbox.again(f"m{i}").body.get("code") for i in range(60)]

    assert run() == run()


def test_validation_answers_code_minus_one_in_a_200_and_records_nothing(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["decline"])
    reply = sandbox.again(merchant_uid="m" * 41)
    assert reply.status == 200 and reply.body["code"] == -1 and reply.body["response"] is None
    assert str(reply.body["message"]).startswith("merchant_uid:")
    assert sandbox.state.ledger.all() == []
    assert response(sandbox.again())["status"] == "failed"  # the script was not consumed


def test_malformed_bodies_answer_code_minus_one_in_a_200(sandbox: Sandbox) -> None:
    raw = RawRequest(
        "POST", "/subscribe/payments/again", b"{nope", "application/json", sandbox.token
    )
    assert dispatch(sandbox.state, raw).status == 200
    raw = RawRequest(
        "POST",
        "/subscribe/payments/again",
        b"a=%ZZ%FF",
        "application/x-www-form-urlencoded",
        sandbox.token,
    )
    assert dispatch(sandbox.state, raw).status == 200


def test_unknown_paths_and_methods(sandbox: Sandbox) -> None:
    assert sandbox.call("GET", "/nowhere").status == 404
    assert sandbox.call("GET", "/").status == 404
    assert sandbox.call("PUT", "/payments/cancel").status == 404
    assert sandbox.call("GET", "/subscribe/payments/again").status == 404
    assert sandbox.call("POST", "/payments/prepare").status == 404


def test_form_bodies(sandbox: Sandbox) -> None:
    body = {
        "customer_uid": "c1",
        "merchant_uid": "m1",
        "amount": "55000",
        "name": "팀",
        "card_quota": "3",
    }
    payment = response(sandbox.call("POST", "/subscribe/payments/again", body, form=True))
    assert (payment["amount"], payment["card_quota"]) == (55000, 3)


def test_find_and_find_all(sandbox: Sandbox) -> None:
    sandbox.state.script("c1", ["decline", "decline"])
    for _ in range(3):
        sandbox.again()
        sandbox.clock.now += 10
    latest = response(sandbox.call("GET", "/payments/find/m1"))
    assert latest["status"] == "paid"
    failed = response(sandbox.call("GET", "/payments/find/m1/failed"))
    assert failed["status"] == "failed" and failed["started_at"] == 1_767_225_610
    oldest = response(sandbox.call("GET", "/payments/find/m1?sorting=started"))
    assert oldest["started_at"] == 1_767_225_600
    assert sandbox.call("GET", "/payments/find/m1/cancelled").status == 404
    assert sandbox.call("GET", "/payments/find/other").status == 404
    assert sandbox.call("GET", "/payments/find/m1/bogus").status == 200
    page = response(sandbox.call("GET", "/payments/findAll/m1?limit=2"))
    assert (page["total"], page["previous"], page["next"], len(page["list"])) == (3, 0, 2, 2)  # type: ignore[arg-type]
    page = response(sandbox.call("GET", "/payments/findAll/m1?limit=2&page=2"))
    assert (page["previous"], page["next"], len(page["list"])) == (1, 0, 1)  # type: ignore[arg-type]
    failed_page = response(sandbox.call("GET", "/payments/findAll/m1/failed"))
    assert failed_page["total"] == 2
    assert sandbox.call("GET", "/payments/findAll/m1/cancelled").status == 404
    assert sandbox.call("GET", "/payments/findAll/nothing").status == 404
    assert sandbox.call("GET", "/payments/findAll/m1?limit=0").status == 200


def test_payments_by_status_in_a_time_window_paged(sandbox: Sandbox) -> None:
    start = int(sandbox.clock.now)
    sandbox.state.script("c1", ["decline"])
    for n in range(4):
        sandbox.again(f"m{n}")
        sandbox.clock.now += 10
    sandbox.call("POST", "/payments/cancel", {"merchant_uid": "m1", "reason": "console"})
    paid = response(sandbox.call("GET", "/payments/status/paid?sorting=started"))
    assert [p["merchant_uid"] for p in paid["list"]] == ["m2", "m3"]  # type: ignore[union-attr]
    cancelled = response(sandbox.call("GET", "/payments/status/cancelled"))
    assert [p["merchant_uid"] for p in cancelled["list"]] == ["m1"]  # type: ignore[union-attr]
    window = f"from={start + 15}&to={start + 25}"
    late = response(sandbox.call("GET", f"/payments/status/paid?{window}"))
    assert [p["merchant_uid"] for p in late["list"]] == ["m2"]  # type: ignore[union-attr]
    page = response(sandbox.call("GET", "/payments/status/all?limit=3&page=2&sorting=started"))
    assert (page["total"], page["previous"], page["next"]) == (4, 1, 0)
    assert [p["merchant_uid"] for p in page["list"]] == ["m3"]  # type: ignore[union-attr]
    # the document lists a 400 for this endpoint's bad parameters
    assert sandbox.call("GET", "/payments/status/lost").status == 400
    assert sandbox.call("GET", "/payments/status/paid?limit=1001").status == 400


def test_payment_by_imp_uid(sandbox: Sandbox) -> None:
    imp_uid = response(sandbox.again())["imp_uid"]
    assert (
        response(sandbox.call("GET", f"/payments/{imp_uid}?include_sandbox=true"))["imp_uid"]
        == imp_uid
    )
    assert sandbox.call("GET", "/payments/imps_000000000000").status == 404


def test_percent_encoded_path_segments(sandbox: Sandbox) -> None:
    response(sandbox.again("m/1 x"))
    assert response(sandbox.call("GET", "/payments/find/m%2F1%20x"))["merchant_uid"] == "m/1 x"


def test_customers_register_get_delete(sandbox: Sandbox) -> None:
    card = {"card_number": "4111-1111-1111-1111", "expiry": "2099-01", "birth": "900101"}
    key = response(
        sandbox.call("POST", "/subscribe/customers/cust", {**card, "customer_name": "홍"})
    )
    assert (key["customer_uid"], key["card_number"], key["customer_name"]) == (
        "cust",
        "411111******1111",
        "홍",
    )
    assert response(sandbox.call("GET", "/subscribe/customers/cust")) == key
    assert (
        response(sandbox.call("DELETE", "/subscribe/customers/cust?reason=x"))["customer_uid"]
        == "cust"
    )
    assert sandbox.call("GET", "/subscribe/customers/cust").status == 404
    assert sandbox.call("DELETE", "/subscribe/customers/cust").status == 404
    refused = sandbox.again(customer_uid="cust")
    assert (refused.status, refused.body["code"]) == (200, -1)
    assert sandbox.state.ledger.all() == []
    response(sandbox.call("POST", "/subscribe/customers/cust", card))  # issued again
    assert response(sandbox.again(customer_uid="cust"))["status"] == "paid"


def test_bad_cards_are_refused_with_code_minus_one(sandbox: Sandbox) -> None:
    reply = sandbox.call(
        "POST", "/subscribe/customers/c9", {"card_number": "4111111111111112", "expiry": "2099-01"}
    )
    assert (reply.status, reply.body["code"], reply.body["response"]) == (200, -1, None)
    reply = sandbox.call(
        "POST", "/subscribe/customers/c9", {"card_number": "4111111111111111", "expiry": "2001-01"}
    )
    assert (reply.status, reply.body["code"]) == (200, -1)
    assert sandbox.call("POST", "/subscribe/customers/c9", {"expiry": "2099-01"}).status == 200
    assert sandbox.call("POST", "/subscribe/customers/" + "c" * 81, {}).status == 200
    assert sandbox.call("GET", "/subscribe/customers/" + "c" * 81).status == 200
    assert sandbox.call("DELETE", "/subscribe/customers/" + "c" * 81).status == 200


def test_by_default_only_registered_customers_are_charged() -> None:
    sandbox = Sandbox(SandboxConfig())  # what a user gets
    refused = sandbox.again()
    assert (refused.status, refused.body["code"], refused.body["response"]) == (200, -1, None)
    assert "등록되지 않은 구매자입니다" in str(refused.body["message"])
    assert "c1" in str(refused.body["message"])
    assert sandbox.state.ledger.all() == []
    assert sandbox.call("GET", "/subscribe/customers/c1").status == 404
    sandbox.state.register_customer("c1")
    assert response(sandbox.again())["status"] == "paid"


def test_cancel_endpoint(sandbox: Sandbox) -> None:
    imp_uid = response(sandbox.again())["imp_uid"]
    part = response(
        sandbox.call(
            "POST", "/payments/cancel", {"imp_uid": imp_uid, "amount": 900, "reason": "r1"}
        )
    )
    assert (part["status"], part["cancel_amount"], part["cancel_reason"]) == ("paid", 900, "r1")
    refused = sandbox.call("POST", "/payments/cancel", {"merchant_uid": "m1", "checksum": 1})
    assert (refused.status, refused.body["code"]) == (200, -1)
    rest = response(
        sandbox.call("POST", "/payments/cancel", {"merchant_uid": "m1", "checksum": 9000})
    )
    assert (rest["status"], rest["cancel_amount"]) == ("cancelled", 9900)
    assert len(rest["cancel_history"]) == len(rest["cancel_receipt_urls"]) == 2  # type: ignore[arg-type]
    again = sandbox.call("POST", "/payments/cancel", {"imp_uid": imp_uid})
    assert again.body["code"] == -1
    assert sandbox.call("POST", "/payments/cancel", {"reason": "x"}).status == 200
    assert sandbox.state.stats()["payments"] == {"paid": 0, "failed": 0, "cancelled": 1}


def test_a_cancel_with_amount_0_cancels_everything_left(sandbox: Sandbox) -> None:
    imp_uid = response(sandbox.again())["imp_uid"]
    response(sandbox.call("POST", "/payments/cancel", {"imp_uid": imp_uid, "amount": 900}))
    rest = response(sandbox.call("POST", "/payments/cancel", {"imp_uid": imp_uid, "amount": 0}))
    assert (rest["status"], rest["cancel_amount"]) == ("cancelled", 9900)


def test_admin_endpoints(sandbox: Sandbox) -> None:
    assert (
        sandbox.call(
            "POST", "/__sandbox__/script", {"customer_uid": "c1", "behaviors": ["decline:A"]}
        ).status
        == 200
    )
    assert (
        sandbox.call(
            "POST", "/__sandbox__/default", {"customer_uid": None, "behavior": "decline:B"}
        ).status
        == 200
    )
    assert [response(sandbox.again(f"m{i}"))["fail_reason"] for i in range(2)] == ["A", "B"]
    assert (
        sandbox.call(
            "POST", "/__sandbox__/faults", {"faults": {"error_500": 1.0}, "seed": 1}
        ).status
        == 200
    )
    assert sandbox.again("m9").status == 500
    assert sandbox.call("POST", "/__sandbox__/latency", {"ms": 5}).status == 200
    assert sandbox.state.latency_ms == 5
    assert [p["fail_reason"] for p in sandbox.state.ledger_json()] == ["A", "B"]
    assert sandbox.call("GET", "/__sandbox__/ledger").body == {
        "payments": sandbox.state.ledger_json()
    }
    stats = sandbox.call("GET", "/__sandbox__/stats").body
    assert stats["payments"] == {"paid": 0, "failed": 2, "cancelled": 0}
    assert stats["faults"] == {"decline": 2, "error_500": 1}
    assert stats["requests"]["POST /subscribe/payments/again"] == 3  # type: ignore[index]
    assert sandbox.call("POST", "/__sandbox__/expire-tokens").body == {"ok": True, "expired": 1}
    assert sandbox.again("m10").status == 401
    assert sandbox.call("POST", "/__sandbox__/reset").status == 200
    assert sandbox.state.ledger.all() == [] and sandbox.state.latency_ms == 0
    assert sandbox.call("GET", "/__sandbox__/stats").body["faults"] == {}


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/__sandbox__/script", {"customer_uid": "c1", "behaviors": ["bogus"]}),
        ("/__sandbox__/script", {"customer_uid": "c1", "behaviors": "approve"}),
        ("/__sandbox__/script", {"customer_uid": 5, "behaviors": []}),
        ("/__sandbox__/default", {"customer_uid": None}),
        ("/__sandbox__/default", {"customer_uid": None, "behavior": "latency"}),
        ("/__sandbox__/faults", {"faults": {"decline": 2}}),
        ("/__sandbox__/faults", {"faults": [], "seed": None}),
        ("/__sandbox__/faults", {"faults": {}, "seed": "x"}),
        ("/__sandbox__/latency", {"ms": -1}),
        ("/__sandbox__/latency", {"ms": "5"}),
    ],
)
def test_admin_refusals(sandbox: Sandbox, target: str, body: dict[str, object]) -> None:
    reply = sandbox.call("POST", target, body)
    assert (reply.status, reply.body["code"], reply.body["response"]) == (400, -1, None)


def test_reset_clears_everything_but_the_configuration(sandbox: Sandbox) -> None:
    sandbox.state.register_customer("c1")
    sandbox.state.script("c1", ["decline"])
    sandbox.state.set_faults({"error_500": 0.5}, seed=1)
    sandbox.again()
    sandbox.state.reset()
    assert sandbox.again().status == 401  # tokens are gone too
    sandbox.token = sandbox.state.tokens.issue().access_token
    assert response(sandbox.again())["status"] == "paid"
    assert sandbox.state.stats()["faults"] == {}
