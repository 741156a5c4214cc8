"""The key-in first payment over real HTTP: ``POST /v1/subscriptions`` with ``card`` pays the
first period in one PortOne ``onetime`` call that issues the billing key, against the
sandbox (which knows no customer until a key is issued), on real PostgreSQL; and the same
from ``billing subscriptions create --card-number``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import httpx
from sqlalchemy import text

from billing.db.tables import Subscription
from tests.integration.api.conftest import Api
from tests.integration.test_web import start_serve

NUMBER = "4111111111111111"
CARD = {"number": "4111-1111-1111-1111", "expiry": "2031-11", "birth": "871231", "pwd_2digit": "12"}
SECRETS = (NUMBER, "4111-1111-1111-1111", "871231")


def with_card(api: Api, uid: str, plan: str = "monthly", idem: str | None = None) -> httpx.Response:
    api.put(f"/v1/customers/{uid}", {"email": f"{uid}@example.com"})
    body = {"customer_uid": uid, "plan_id": plan, "card": CARD}
    return api.post("/v1/subscriptions", body, idem=idem)


def error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()["error"]
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def paid_at_portone(api: Api) -> list[dict[str, Any]]:
    return [p for p in api.sandbox.ledger() if p["status"] == "paid"]


def no_card_data_in_the_database(api: Api) -> None:
    """Every text column of every table, as a pg_dump would show them."""
    with api.app.transaction() as session:
        tables = session.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        for table in list(tables):
            rows = session.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
            for row in rows:
                assert not any(secret in row for secret in SECRETS), (table, row)


def test_a_card_pays_the_first_period_and_issues_the_key_renewals_use(api: Api) -> None:
    answer = with_card(api, "cust-k", idem="k-1")
    assert answer.status_code == 201, answer.text
    sub = answer.json()
    assert sub["status"] == "active"
    assert sub["current_period_start"] == sub["started_at"]  # the first period is paid
    assert sub["period_no"] == 2 and sub["next_charge_at"] == sub["current_period_end"]
    [charge] = api.charges()
    assert (charge.status, charge.amount, charge.sends) == ("paid", 9900, 1)
    [payment] = paid_at_portone(api)
    assert payment["merchant_uid"] == charge.merchant_uid
    assert payment["customer_uid"] == "cust-k"
    assert api.get("/v1/customers/cust-k").json()["billing_key"]["card_number"].endswith("1111")
    [issued] = api.events("billing_key_registered")
    assert issued.data["actor"] == "api:shop" and issued.data["via"] == "onetime"
    # the key PortOne issued with the payment is what the renewal charges
    assert api.post("/v1/test-clock", {"now": sub["current_period_end"]}).status_code == 200
    api.charge_due()
    assert [c.status for c in api.charges()] == ["paid", "paid"]
    assert len(paid_at_portone(api)) == 2
    # each payment's card sales slip, as PortOne named it, for the merchant's customers
    slips = {p["merchant_uid"]: p["receipt_url"] for p in paid_at_portone(api)}
    assert [c.receipt_url for c in api.charges()] == [slips[c.merchant_uid] for c in api.charges()]
    listed = api.get("/v1/charges").json()["data"]
    assert {c["receipt_url"] for c in listed} == set(slips.values())
    # the same request again is the first answer, not a second payment
    replay = with_card(api, "cust-k", idem="k-1")
    assert replay.status_code == 201 and replay.json()["id"] == sub["id"]
    assert len(paid_at_portone(api)) == 2
    assert not any(secret in answer.text for secret in SECRETS)
    no_card_data_in_the_database(api)


def test_a_declined_first_payment_is_422_and_ends_the_subscription(api: Api) -> None:
    api.sandbox.script("cust-no", ["decline:한도초과"])
    message = error(with_card(api, "cust-no", idem="no-1"), 422, "card_declined")
    assert "한도초과" in message
    [sub] = api.get("/v1/subscriptions").json()["data"]
    assert sub["status"] == "canceled"
    [charge] = api.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "한도초과")
    assert paid_at_portone(api) == []
    assert api.get("/v1/customers/cust-no").json()["billing_key"] is None
    # nothing is charged later: no key, no dunning
    api.post("/v1/test-clock", {"advance": "10d"})
    api.charge_due()
    assert len(api.charges()) == 1
    assert error(with_card(api, "cust-no", idem="no-1"), 422, "card_declined") == message


def test_an_answer_lost_after_portone_paid_is_looked_up_and_recorded_paid(api: Api) -> None:
    api.sandbox.script("cust-lost", ["commit_then_timeout"])  # the sandbox holds the answer
    answer = with_card(api, "cust-lost")
    assert answer.status_code == 201, answer.text
    assert answer.json()["current_period_start"] is not None
    [charge] = api.charges()
    assert (charge.status, charge.sends) == ("paid", 1)
    assert len(paid_at_portone(api)) == 1
    assert charge.receipt_url == paid_at_portone(api)[0]["receipt_url"]  # from the lookup
    [answer_event] = api.events("gateway_answer")
    assert answer_event.data["outcome"] == "unknown"  # the answer never came
    [found] = api.events("reconciled")  # a lookup by merchant_uid found the payment
    assert found.data["merchant_uid"] == charge.merchant_uid


def test_a_5xx_leaves_the_charge_to_the_sweep_and_charges_nothing_twice(api: Api) -> None:
    api.sandbox.script("cust-5xx", ["error_500"])
    answer = with_card(api, "cust-5xx")
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "active"
    [charge] = api.charges()
    assert charge.status == "unknown"  # PortOne has nothing yet; looked up again later
    assert paid_at_portone(api) == []


def test_a_first_payment_that_never_reached_portone_is_503_and_can_be_retried(api: Api) -> None:
    api.sandbox.script("cust-tok", ["token_expired", "token_expired"])  # the replay too
    message = error(with_card(api, "cust-tok", idem="tok-1"), 503, "portone_unavailable")
    assert "nothing was charged" in message
    [sub] = api.get("/v1/subscriptions").json()["data"]
    assert sub["status"] == "canceled"
    assert api.sandbox.ledger() == []
    retried = with_card(api, "cust-tok", idem="tok-1")  # a 503 is not kept: the retry runs
    assert retried.status_code == 201, retried.text
    assert [c.status for c in api.charges()] == ["failed", "paid"]
    assert len(paid_at_portone(api)) == 1


def test_a_card_for_a_period_not_due_now_or_a_bad_card_changes_nothing(api: Api) -> None:
    api.put("/v1/customers/cust-bad", {})
    later = {"customer_uid": "cust-bad", "plan_id": "monthly", "card": CARD}
    later["start"] = "2027-03-01T00:00:00+09:00"
    assert "nothing is due" in error(api.post("/v1/subscriptions", later), 422, "invalid_request")
    wrong = {**CARD, "number": "4111111111111112"}
    body = {"customer_uid": "cust-bad", "plan_id": "monthly", "card": wrong}
    bad = api.post("/v1/subscriptions", body)
    assert error(bad, 422, "invalid_request").startswith("card.number ")
    assert "4111111111111112" not in bad.text
    assert api.get("/v1/subscriptions").json()["data"] == []
    assert api.sandbox.ledger() == []
    with api.app.transaction() as session:
        assert session.query(Subscription).count() == 0


def test_the_cli_pays_the_first_period_by_card(api: Api) -> None:
    api.put("/v1/customers/cust-cli", {})
    command = [sys.executable, "-m", "billing", "subscriptions", "create"]
    command += ["--customer", "cust-cli", "--plan", "monthly", "--card-number", NUMBER]
    command += ["--expiry", "2031-11", "--birth", "871231", "--json"]
    env = {**os.environ, **api.env}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '"status": "active"' in done.stdout
    assert [c.status for c in api.charges()] == ["paid"]
    assert not any(secret in done.stdout + done.stderr for secret in SECRETS)
    api.sandbox.script("cust-cli2", ["decline:분실신고 카드"])
    api.put("/v1/customers/cust-cli2", {})
    command[6] = "cust-cli2"
    declined = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert declined.returncode == 1
    assert declined.stderr.strip().endswith("card: first payment declined: 분실신고 카드")
    no_expiry = command[:11]
    missing = subprocess.run(
        no_expiry, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode == 1 and "--expiry is needed" in missing.stderr


def test_no_card_data_in_logs_answers_or_rows_even_when_portone_echoes_it(api: Api) -> None:
    """`billing serve` at DEBUG with its access log; PortOne's decline reason quotes the card."""
    api.sandbox.script("cust-echo", [f"decline:카드 {NUMBER} 생년월일 871231 불일치"])
    env = {**api.env, "BILLING_LOG_LEVEL": "DEBUG"}
    process, url = start_serve(env, "--access-log")
    bearer = {"Authorization": f"Bearer {api.key}"}
    try:
        for uid in ("cust-echo", "cust-ok"):
            httpx.put(f"{url}/v1/customers/{uid}", headers=bearer, json={})
            body = {"customer_uid": uid, "plan_id": "monthly", "card": CARD}
            answer = httpx.post(f"{url}/v1/subscriptions", headers=bearer, json=body, timeout=30)
            assert answer.status_code in (201, 422), answer.text
            assert not any(secret in answer.text for secret in SECRETS), answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert '"action": "charge_answer"' in err  # it did log the payments
    assert not any(secret in err for secret in SECRETS)
    assert [c.status for c in api.charges()] == ["failed", "paid"]
    assert "불일치" in (api.charges()[0].fail_reason or "")
    no_card_data_in_the_database(api)
