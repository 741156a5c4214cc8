"""PortOne's official Python client (``iamport-rest-client`` 0.9.0) against a real ``billing
sandbox`` process over HTTP: every method of the client whose endpoint the sandbox serves."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

iamport = pytest.importorskip("iamport")  # `make install` installs it (--no-deps, see Makefile)

CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2099-12", "birth": "900101"}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    command = [sys.executable, "-m", "billing", "sandbox", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        yield dict(part.split("=", 1) for part in line.split())["BILLING_PORTONE_URL"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture
def client(sandbox_url: str) -> Any:
    return iamport.Iamport("sandbox_key", "sandbox_secret", imp_url=f"{sandbox_url}/")


def test_a_token_and_bad_credentials(sandbox_url: str, client: Any) -> None:
    assert client.get_headers()["Authorization"]
    wrong = iamport.Iamport("sandbox_key", "wrong", imp_url=f"{sandbox_url}/")
    with pytest.raises(iamport.Iamport.HttpError):
        wrong.get_headers()


def test_customer_create_get_delete(client: Any) -> None:
    created = client.customer_create(customer_uid="cc1", **CARD)
    assert created["customer_uid"] == "cc1" and created["card_number"] == "411111******1111"
    assert client.customer_get("cc1") == created
    assert client.customer_delete("cc1")["customer_uid"] == "cc1"
    with pytest.raises(iamport.Iamport.HttpError):
        client.customer_get("cc1")  # 404: deleted


def test_pay_again_refuses_a_customer_never_registered(client: Any) -> None:
    with pytest.raises(iamport.Iamport.ResponseError) as refused:
        client.pay_again(customer_uid="nobody", merchant_uid="r1", amount=9900, name="월간")
    assert "등록되지 않은 구매자입니다" in refused.value.message


def test_pay_onetime_then_again_find_is_paid_and_cancel(client: Any) -> None:
    first = client.pay_onetime(
        merchant_uid="p1", amount=9900, name="월간", customer_uid="pc1", pwd_2digit="12", **CARD
    )
    assert (first["status"], first["sandbox"]) == ("paid", True)
    renewal = client.pay_again(customer_uid="pc1", merchant_uid="p2", amount=9900, name="월간")
    assert renewal["status"] == "paid"
    assert client.find(merchant_uid="p2")["imp_uid"] == renewal["imp_uid"]
    assert client.find_by_imp_uid(renewal["imp_uid"])["merchant_uid"] == "p2"
    assert client.find_by_merchant_uid("p1")["imp_uid"] == first["imp_uid"]
    assert client.is_paid(9900, merchant_uid="p2") and not client.is_paid(1, merchant_uid="p2")
    partial = client.cancel("부분 환불", imp_uid=renewal["imp_uid"], amount=900)
    assert (partial["status"], partial["cancel_amount"]) == ("paid", 900)
    full = client.cancel_by_merchant_uid("p2", "전액 환불")
    assert (full["status"], full["cancel_amount"]) == ("cancelled", 9900)
    by_imp_uid = client.cancel_by_imp_uid(first["imp_uid"], "환불")
    assert by_imp_uid["status"] == "cancelled"
    with pytest.raises(iamport.Iamport.ResponseError):
        client.cancel("again", merchant_uid="p2")  # already fully cancelled
    with pytest.raises(iamport.Iamport.HttpError):
        client.find(merchant_uid="never")


@pytest.mark.xfail(
    raises=TypeError, strict=True, reason="0.9.0's own bug: find_by_status calls _get(params=)"
)
def test_find_by_status(client: Any) -> None:
    client.customer_create(customer_uid="fs1", **CARD)
    paid = client.pay_again(customer_uid="fs1", merchant_uid="fs-1", amount=9900, name="월간")
    listed = client.find_by_status("paid", limit=1000)
    assert paid["imp_uid"] in {p["imp_uid"] for p in listed["list"]}


def test_pay_schedule_get_and_unschedule(client: Any) -> None:
    client.customer_create(customer_uid="sc1", **CARD)
    schedules = [{"merchant_uid": "s1", "schedule_at": 4102444800, "amount": 9900}]
    client.pay_schedule(customer_uid="sc1", schedules=schedules)
    assert client.pay_schedule_get("s1")["merchant_uid"] == "s1"
    between = client.pay_schedule_get_between(schedule_from=4102358400, schedule_to=4102531200)
    assert between
    revoked = client.pay_unschedule(customer_uid="sc1", merchant_uid=["s1"])
    assert [(s["merchant_uid"], s["schedule_status"]) for s in revoked] == [("s1", "revoked")]
    with pytest.raises(iamport.Iamport.ResponseError):  # code 1: nothing left to revoke
        client.pay_unschedule(customer_uid="sc1", merchant_uid=["s1"])
