"""The PortOne client against httpx.MockTransport: tokens, 401 replay, transport failures."""

from __future__ import annotations

import json
import time

import httpx

from billing.domain.charges import ChargeRequest
from billing.portone.answers import Outcome, Transport, classify_again
from billing.portone.client import PortOneClient

REQUEST = ChargeRequest("cust-1", "sub-abcdefgh1234-1-1", 9900, "베이직")


class FakePortOne:
    """Answers getToken and again; counts calls; can expire tokens or fail."""

    def __init__(self, ttl: int = 1800) -> None:
        self.ttl = ttl
        self.tokens_issued = 0
        self.valid: set[str] = set()
        self.calls: list[str] = []
        self.again_status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if request.url.path == "/users/getToken":
            body = json.loads(request.content)
            if body != {"imp_key": "key", "imp_secret": "secret"}:
                return httpx.Response(401, json={"code": -1, "message": "bad", "response": None})
            self.tokens_issued += 1
            token = f"token-{self.tokens_issued}"
            self.valid.add(token)
            now = int(time.time())
            return httpx.Response(
                200,
                json={
                    "code": 0,
                    "message": None,
                    "response": {"access_token": token, "now": now, "expired_at": now + self.ttl},
                },
            )
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(
                401, json={"code": -1, "message": "Unauthorized", "response": None}
            )
        body = json.loads(request.content)
        payment = {
            "imp_uid": "imps_1",
            "merchant_uid": body["merchant_uid"],
            "amount": body["amount"],
            "status": "paid",
        }
        return httpx.Response(
            self.again_status, json={"code": 0, "message": None, "response": payment}
        )


def client(fake: FakePortOne, secret: str = "secret") -> PortOneClient:
    return PortOneClient("https://portone.test", "key", secret, transport=httpx.MockTransport(fake))


def test_the_token_is_fetched_once_and_reused() -> None:
    fake = FakePortOne()
    portone = client(fake)
    for _ in range(3):
        assert (
            classify_again(portone.again(REQUEST), REQUEST.merchant_uid, 9900).outcome
            == Outcome.APPROVED
        )
    assert fake.tokens_issued == 1
    assert fake.calls.count("/subscribe/payments/again") == 3


def test_an_expired_token_is_refreshed_once_and_the_call_replayed() -> None:
    fake = FakePortOne()
    portone = client(fake)
    portone.again(REQUEST)
    fake.valid.clear()  # PortOne expired every token
    exchange = portone.again(REQUEST)
    assert exchange.status == 200
    assert fake.tokens_issued == 2
    assert fake.calls[-3:] == [
        "/subscribe/payments/again",
        "/users/getToken",
        "/subscribe/payments/again",
    ]


def test_a_token_near_expiry_is_renewed_before_use() -> None:
    fake = FakePortOne(ttl=30)  # less than the one-minute margin
    portone = client(fake)
    portone.again(REQUEST)
    portone.again(REQUEST)
    assert fake.tokens_issued == 2
    assert "/subscribe/payments/again" in fake.calls and fake.calls.count("/users/getToken") == 2


def test_bad_credentials_mean_nothing_was_sent() -> None:
    fake = FakePortOne()
    exchange = client(fake, secret="wrong").again(REQUEST)
    assert exchange.failure == Transport.NOT_SENT
    assert classify_again(exchange, REQUEST.merchant_uid, 9900).outcome == Outcome.TRANSIENT
    assert "/subscribe/payments/again" not in fake.calls


def failing(failure: Exception) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/users/getToken":
            now = int(time.time())
            return httpx.Response(
                200,
                json={
                    "code": 0,
                    "response": {"access_token": "t", "now": now, "expired_at": now + 1800},
                },
            )
        raise failure

    return httpx.MockTransport(answer)


def test_transport_failures_are_classified_by_whether_the_request_left() -> None:
    for failure, expected in (
        (httpx.ConnectError("refused"), Transport.NOT_SENT),
        (httpx.ReadTimeout("slow"), Transport.NO_ANSWER),
        (httpx.RemoteProtocolError("reset"), Transport.NO_ANSWER),
        (httpx.WriteError("broken pipe"), Transport.NO_ANSWER),
    ):
        portone = PortOneClient("https://portone.test", "k", "s", transport=failing(failure))
        assert portone.again(REQUEST).failure == expected


def test_the_client_never_shows_its_secret() -> None:
    portone = client(FakePortOne(), secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(portone)


def test_amounts_are_sent_as_integers() -> None:
    assert REQUEST.body()["amount"] == 9900 and isinstance(REQUEST.body()["amount"], int)
    assert "card_quota" not in REQUEST.body()
    assert ChargeRequest("c", "m", 60000, "n", card_quota=3).body()["card_quota"] == 3
