"""Every endpoint of /v1 over real HTTP: the checkout flow, lifecycle actions with who did
them, refunds, reads that equal the CLI's --json, lists page by page, auth, and errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billing.config import load_settings
from billing.db.api_tables import ApiKey
from billing.services.api_keys import revoke_key
from billing.web import create_app
from tests.conftest import CliRunner
from tests.integration.api.conftest import Api
from tests.integration.test_web import WebServer, free_socket


def error(answer: httpx.Response, status: int, code: str) -> str:
    """The envelope's message, after checking status, code and shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def events_of(api: Api, sid: int) -> list[dict[str, Any]]:
    answer = api.get(f"/v1/subscriptions/{sid}/events", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


# -- the checkout flow -----------------------------------------------------------------------


def test_checkout_flow_from_parameters_to_a_paid_first_period(api: Api) -> None:
    assert (
        api.put("/v1/customers/cust-1", {"name": "홍길동", "email": "c1@example.com"}).status_code
        == 201
    )
    params = api.get("/v1/checkout-params", params={"customer_uid": "cust-1", "plan_id": "monthly"})
    assert params.status_code == 200, params.text
    assert params.json() | {"merchant_uid": "m"} == {
        "pg": "kcp_billing.A52CY",
        "pay_method": "card",
        "merchant_uid": "m",
        "name": "월간 정기결제 등록",
        "amount": 0,
        "customer_uid": "cust-1",
        "buyer_name": "홍길동",
        "buyer_email": "c1@example.com",
        "buyer_tel": None,
        "m_redirect_url": "https://merchant.example/billing/return",
    }
    # the callback came before PortOne issued the key (or the customer closed the window)
    early = api.post("/v1/customers/cust-1/billing-key/verify")
    assert "cust-1" in error(early, 422, "billing_key_not_found")

    api.issue_key_at_portone("cust-1")  # the page's IMP.request_pay
    verified = api.post("/v1/customers/cust-1/billing-key/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json() == {
        "customer_uid": "cust-1",
        "billing_key": "verified",
        "card_name": "신한카드",
        "card_number": "************1111",
        "retried": [],
    }
    customer = api.get("/v1/customers/cust-1").json()
    assert customer["billing_key"]["card_number"] == "************1111"

    sub = api.subscribe("cust-1")
    assert (sub["status"], sub["customer_uid"], sub["plan_id"]) == ("active", "cust-1", "monthly")
    api.charge_due()
    charges = api.get("/v1/charges", params={"subscription_id": sub["id"]}).json()["data"]
    assert [(c["status"], c["amount"]) for c in charges] == [("paid", 9900)]
    after = api.get(f"/v1/subscriptions/{sub['id']}").json()
    assert after["current_period_end"] == "2027-02-28T00:30:00+09:00"  # Jan 31 -> Feb 28


def test_verify_retries_the_customers_past_due_subscriptions(api: Api) -> None:
    api.customer_with_key("cust-poor")
    api.sandbox.script("cust-poor", ["decline:잔액부족"])
    sid = api.subscribe("cust-poor")["id"]
    api.charge_due()
    assert api.get(f"/v1/subscriptions/{sid}").json()["status"] == "past_due"
    api.issue_key_at_portone("cust-poor")  # a new card through the checkout
    verified = api.post("/v1/customers/cust-poor/billing-key/verify").json()
    assert verified["retried"] == [sid]
    api.charge_due()
    assert api.get(f"/v1/subscriptions/{sid}").json()["status"] == "active"


def test_verify_of_an_unknown_customer_is_404(api: Api) -> None:
    error(api.post("/v1/customers/nobody/billing-key/verify"), 404, "not_found")


def test_delete_billing_key_refused_while_needed_unless_forced(api: Api) -> None:
    api.customer_with_key("cust-d")
    api.subscribe("cust-d")
    message = error(api.delete("/v1/customers/cust-d/billing-key"), 409, "conflict")
    assert "1 subscription" in message
    forced = api.delete(
        "/v1/customers/cust-d/billing-key", params={"force": "true", "reason": "closed account"}
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["billing_key"] == "deleted"
    assert api.get("/v1/customers/cust-d").json()["billing_key"] is None
    error(api.post("/v1/customers/cust-d/billing-key/verify"), 422, "billing_key_not_found")
    [deleted] = api.events("billing_key_deleted")
    assert deleted.data["actor"] == "api:shop" and deleted.data["reason"] == "closed account"


# -- customers and plans ---------------------------------------------------------------------


def test_put_customer_creates_then_replaces(api: Api) -> None:
    created = api.put("/v1/customers/cust-p", {"name": "김", "phone": "010-1234-5678"})
    assert created.status_code == 201
    updated = api.put("/v1/customers/cust-p", {"email": "p@example.com"})
    assert updated.status_code == 200
    body = updated.json()
    assert (body["name"], body["email"], body["phone"]) == (None, "p@example.com", None)
    assert api.get("/v1/customers/cust-p").json() == body
    assert error(
        api.put("/v1/customers/cust-p", {"email": "nope"}), 422, "invalid_request"
    ).startswith("email: ")
    assert error(api.put("/v1/customers/bad%20uid", {}), 422, "invalid_request").startswith(
        "customer_uid"
    )
    error(api.get("/v1/customers/nobody"), 404, "not_found")


def test_plans_and_preview(api: Api) -> None:
    plans = api.get("/v1/plans").json()
    assert [p["id"] for p in plans["data"]] == ["monthly", "yearly"] and not plans["has_more"]
    first = api.get("/v1/plans", params={"limit": 1}).json()
    assert [p["id"] for p in first["data"]] == ["monthly"] and first["has_more"]
    rest = api.get("/v1/plans", params={"starting_after": "monthly"}).json()
    assert [p["id"] for p in rest["data"]] == ["yearly"]
    preview = api.get(
        "/v1/plans/monthly/preview", params={"start": "2027-01-31T00:30:00+09:00", "count": 3}
    )
    assert preview.json()["data"] == [
        {"at": "2027-01-31T00:30:00+09:00", "amount": 9900},
        {"at": "2027-02-28T00:30:00+09:00", "amount": 9900},
        {"at": "2027-03-31T00:30:00+09:00", "amount": 9900},
    ]
    assert error(
        api.get("/v1/plans/monthly/preview", params={"start": "soon"}), 422, "invalid_request"
    ).startswith("start: ")
    error(api.get("/v1/plans/nope/preview"), 404, "not_found")


def test_objects_are_the_clis_json(api: Api, db_url: str, tmp_path: Any) -> None:
    api.customer_with_key("cust-cli")
    sid = api.subscribe("cust-cli")["id"]
    api.charge_due()
    cli = CliRunner(api.env, tmp_path)
    shown = cli("subscriptions", "show", str(sid), "--json")
    assert shown.code == 0, shown.err
    assert api.get(f"/v1/subscriptions/{sid}").json() == json.loads(shown.out)
    listed = cli("charges", "list", "--json")
    charge = json.loads(listed.out)[0]
    assert api.get(f"/v1/charges/{charge['id']}").json() == charge
    history = json.loads(cli("subscriptions", "events", str(sid), "--json").out)
    assert events_of(api, sid) == history[::-1]  # newest first


# -- lifecycle, with who did it --------------------------------------------------------------


def test_lifecycle_actions_answer_the_subscription_after_them(api: Api) -> None:
    api.customer_with_key("cust-l")
    sid = api.subscribe("cust-l")["id"]
    api.charge_due()
    path = f"/v1/subscriptions/{sid}"
    changed = api.post(f"{path}/change-plan", {"plan_id": "yearly", "reason": "upgrade"})
    assert changed.status_code == 200 and changed.json()["plan_id"] == "yearly"  # next period
    scheduled = api.post(f"{path}/cancel", {"at_period_end": True, "reason": "moving"})
    assert (scheduled.json()["status"], scheduled.json()["cancel_at_period_end"]) == (
        "active",
        True,
    )
    paused = api.post(f"{path}/pause", {"reason": "customer asked"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = api.post(f"{path}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    canceled = api.post(f"{path}/cancel", {"reason": "moving now"})
    assert canceled.json()["status"] == "canceled"
    assert "canceled" in error(api.post(f"{path}/cancel"), 409, "conflict")
    error(api.post(f"{path}/change-plan", {"plan_id": "nope"}), 404, "not_found")
    error(api.post("/v1/subscriptions/999/pause"), 404, "not_found")

    history = {
        (e["kind"], e["data"].get("actor"), e["data"].get("reason")) for e in events_of(api, sid)
    }
    assert {
        ("subscription_created", "api:shop", None),
        ("subscription_paused", "api:shop", "customer asked"),
        ("subscription_resumed", "api:shop", None),
        ("plan_changed", "api:shop", "upgrade"),
        ("cancel_scheduled", "api:shop", "moving"),
        ("subscription_canceled", "api:shop", "moving now"),
    } <= history
    charged = [e for e in events_of(api, sid) if e["kind"] == "charge_paid"]
    assert charged and all("actor" not in e["data"] for e in charged)  # the worker: nobody


def test_cli_writes_are_recorded_as_cli(api: Api, tmp_path: Any) -> None:
    api.customer_with_key("cust-c")
    sid = api.subscribe("cust-c")["id"]
    done = CliRunner(api.env, tmp_path)("subscriptions", "pause", str(sid))
    assert done.code == 0, done.err
    [paused] = [e for e in events_of(api, sid) if e["kind"] == "subscription_paused"]
    assert paused["data"]["actor"] == "cli"


# -- refunds ---------------------------------------------------------------------------------


def test_refunds_of_a_paid_charge(api: Api) -> None:
    api.customer_with_key("cust-r")
    api.subscribe("cust-r")
    api.charge_due()
    [charge] = api.charges()
    path = f"/v1/charges/{charge.id}/refunds"
    part = api.post(path, {"amount": 4000, "reason": "partial service"})
    assert part.status_code == 201, part.text
    assert (part.json()["status"], part.json()["refundable"]) == ("succeeded", 5900)
    rest = api.post(path, {"reason": "closing"})
    assert (rest.json()["amount"], rest.json()["refundable"]) == (5900, 0)
    assert "refunded in full" in error(api.post(path, {"reason": "again"}), 409, "conflict")
    assert error(
        api.post(path, {"amount": "100", "reason": "x"}), 422, "invalid_request"
    ).startswith("amount: ")
    assert error(api.post(path, {"amount": 100}), 422, "invalid_request").startswith("reason")
    error(api.post("/v1/charges/424242/refunds", {"reason": "x"}), 404, "not_found")
    refunded = api.get(f"/v1/charges/{charge.id}").json()
    assert refunded["refunded_amount"] == 9900
    [event] = api.events("refund_requested")[:1]
    assert event.data["actor"] == "api:shop" and event.data["reason"] == "partial service"


# -- lists -----------------------------------------------------------------------------------


def test_lists_page_newest_first(api: Api) -> None:
    for n in range(5):
        api.customer_with_key(f"cust-{n}")
        api.subscribe(f"cust-{n}")
    pages, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"starting_after": after} if after else {})
        page = api.get("/v1/subscriptions", params=params).json()
        pages.append([s["id"] for s in page["data"]])
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert pages == [[5, 4], [3, 2], [1]]
    default = api.get("/v1/subscriptions").json()
    assert len(default["data"]) == 5 and default["has_more"] is False
    mine = api.get("/v1/subscriptions", params={"customer_uid": "cust-3"}).json()["data"]
    assert [s["id"] for s in mine] == [4]
    api.charge_due()
    charges = api.get("/v1/charges", params={"limit": 3, "status": "paid"}).json()
    assert [c["id"] for c in charges["data"]] == [5, 4, 3] and charges["has_more"]
    assert api.get("/v1/subscriptions", params={"status": "canceled"}).json()["data"] == []
    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"starting_after": 0},
        {"status": "gone"},
    ):
        message = error(api.get("/v1/subscriptions", params=bad), 422, "invalid_request")
        assert message.startswith(next(iter(bad))), message


# -- auth and errors -------------------------------------------------------------------------


def last_used(api: Api) -> list[datetime | None]:
    with api.app.transaction() as session:
        return [row.last_used_at for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def test_auth_none_wrong_revoked_and_read_only(api: Api) -> None:
    assert last_used(api) == [None, None]
    assert api.get("/v1/plans").status_code == 200
    error(api.get("/v1/plans", key=None), 401, "unauthorized")
    error(api.get("/v1/plans", key="bk_" + "x" * 43), 401, "unauthorized")
    error(api.get("/v1/plans", key="not a key"), 401, "unauthorized")
    error(
        api.get("/v1/plans", headers={"Authorization": f"Basic {api.key}"}, key=None),
        401,
        "unauthorized",
    )
    assert api.get("/v1/plans", key=api.read_only_key).status_code == 200
    error(
        api.post(
            "/v1/subscriptions", {"customer_uid": "c", "plan_id": "monthly"}, key=api.read_only_key
        ),
        403,
        "forbidden",
    )
    error(api.put("/v1/customers/c", {}, key=api.read_only_key), 403, "forbidden")
    error(api.delete("/v1/customers/c/billing-key", key=api.read_only_key), 403, "forbidden")
    assert None not in last_used(api)
    with api.app.transaction() as session:
        revoke_key(session, "shop", datetime.now(UTC))
    error(api.get("/v1/plans"), 401, "unauthorized")


def test_errors_are_one_envelope(api: Api) -> None:
    raw = api.request(
        "POST",
        "/v1/subscriptions",
        content=b'{"customer_uid": ',
        headers={"Content-Type": "application/json"},
    )
    error(raw, 400, "malformed_request")
    form = api.request(
        "POST",
        "/v1/subscriptions",
        content=b"customer_uid=c",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    error(form, 400, "malformed_request")
    assert error(
        api.post("/v1/subscriptions", {"plan_id": "monthly"}), 422, "invalid_request"
    ).startswith("customer_uid: ")
    assert error(
        api.post("/v1/subscriptions", {"customer_uid": "c", "plan_id": "monthly", "plan": "x"}),
        422,
        "invalid_request",
    ).startswith("plan: ")
    assert error(api.post("/v1/subscriptions", [1, 2]), 422, "invalid_request").startswith("body")
    error(
        api.post("/v1/subscriptions", {"customer_uid": "ghost", "plan_id": "monthly"}),
        404,
        "not_found",
    )
    assert error(api.get("/v1/subscriptions/abc"), 422, "invalid_request").startswith(
        "subscription_id"
    )
    error(api.get(f"/v1/subscriptions/{2**63}"), 422, "invalid_request")
    error(api.get("/v1/nothing-here"), 404, "not_found")
    error(api.request("PATCH", "/v1/subscriptions"), 405, "method_not_allowed")
    api.put("/v1/customers/c-start", {})
    assert error(
        api.post(
            "/v1/subscriptions",
            {"customer_uid": "c-start", "plan_id": "monthly", "start": "tomorrow"},
        ),
        422,
        "invalid_request",
    ).startswith("start: ")


def test_test_clock_in_sandbox_mode(api: Api) -> None:
    moved = api.post("/v1/test-clock", {"advance": "3d"})
    assert moved.json() == {"now": "2027-02-03T00:30:00+09:00"}
    set_ = api.post("/v1/test-clock", {"now": "2027-03-01T09:00:00+09:00"})
    assert set_.json() == {"now": "2027-03-01T09:00:00+09:00"}
    assert api.post("/v1/test-clock", {"advance": "1 month"}).json()["now"].startswith("2027-04-01")
    error(api.post("/v1/test-clock", {}), 422, "invalid_request")
    assert error(
        api.post("/v1/test-clock", {"advance": "soon"}), 422, "invalid_request"
    ).startswith("advance ")
    error(api.post("/v1/test-clock", {"advance": "1d"}, key=api.read_only_key), 403, "forbidden")


def test_test_clock_is_404_outside_sandbox_mode(api: Api) -> None:
    env = {k: v for k, v in api.env.items() if k not in ("BILLING_SANDBOX", "BILLING_PORTONE_URL")}
    web = WebServer(free_socket()).start(create_app(load_settings(env)))
    try:
        answer = httpx.post(
            web.url + "/v1/test-clock",
            json={"advance": "3d"},
            headers={"Authorization": f"Bearer {api.key}"},
        )
        error(answer, 404, "not_found")
        verify = httpx.post(
            web.url + "/v1/customers/c/billing-key/verify",
            headers={"Authorization": f"Bearer {api.key}"},
        )
        assert verify.status_code in (404, 503)  # no PortOne credentials: nothing to ask
    finally:
        web.stop()


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/v1/docs"])
def test_openapi_and_docs_need_no_key(api: Api, path: str) -> None:
    assert api.get(path, key=None).status_code == 200
