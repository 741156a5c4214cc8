"""The bundled PortOne sandbox over real HTTP: every answer validates against the PortOne V1
OpenAPI document, and the faults happen at the socket (held connection, TCP reset)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from billing.sandbox import SandboxConfig, SandboxServer

ROOT = Path(__file__).resolve().parents[2]
SPEC_CANDIDATES = [
    Path(os.environ.get("BILLING_PORTONE_OPENAPI", "/nonexistent")),
    ROOT / "docs" / "portone" / "v1.openapi.json",
    ROOT / "portone" / "v1.openapi.json",
    ROOT.parent / "shared" / "portone" / "v1.openapi.json",
]
SPEC_URI = "urn:portone:v1"
KEY, SECRET = "sandbox_key", "sandbox_secret"
NUMERIC_KEYWORDS = ("maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems")


# -- the OpenAPI document as JSON Schema -------------------------------------------------------


def swagger_schema(node: Any) -> Any:
    """One swagger 2.0 schema as draft-4 JSON Schema.

    - ``x-`` keys are annotations: dropped.
    - Numeric keywords that the document writes as strings (``"maxLength": "40"``) become ints.
    - A property not listed in ``required`` may also be null: PortOne sends null for absent
      values and swagger 2.0 has no way to say so.
    """
    if isinstance(node, list):
        return [swagger_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {k: swagger_schema(v) for k, v in node.items() if not k.startswith("x-")}
    for keyword in NUMERIC_KEYWORDS:
        if isinstance(schema.get(keyword), str):
            schema[keyword] = int(schema[keyword])
    properties = schema.get("properties")
    if isinstance(properties, dict) and "type" not in properties:
        required = set(schema.get("required", []))
        schema["properties"] = {
            name: prop if name in required else {"anyOf": [prop, {"type": "null"}]}
            for name, prop in properties.items()
        }
    return schema


def find_spec() -> dict[str, Any]:
    for path in SPEC_CANDIDATES:
        if path.is_file():
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
    pytest.skip("PortOne V1 OpenAPI document not found (set BILLING_PORTONE_OPENAPI)")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return find_spec()


class Schemas:
    """Validators for the document's ``definitions``, resolved through one registry."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.definitions: dict[str, Any] = document["definitions"]
        converted = {"definitions": swagger_schema(self.definitions)}
        resource = Resource.from_contents(converted, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)

    def validator(self, schema: dict[str, Any]) -> Draft4Validator:
        return Draft4Validator(schema, registry=self.registry)

    def check(self, name: str, instance: object) -> None:
        """``instance`` is a valid ``#/definitions/<name>``."""
        ref = {"$ref": f"{SPEC_URI}#/definitions/{name}"}
        errors = sorted(self.validator(ref).iter_errors(instance), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)

    def check_error(self, answer: httpx.Response, status: int) -> dict[str, Any]:
        """A refusal: ``ResponseAnnotation`` with code != 0, a message and a null response."""
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = answer.json()
        self.check("ResponseAnnotation", body)
        assert set(body) == {"code", "message", "response"}
        assert body["code"] != 0 and isinstance(body["message"], str) and body["message"]
        assert body["response"] is None
        return body

    def check_ok(self, answer: httpx.Response, name: str) -> dict[str, Any]:
        """A processed answer: HTTP 200, code 0, valid ``name``; answers its ``response``."""
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        self.check(name, body)
        assert body["code"] == 0 and body["message"] is None
        response: dict[str, Any] = body["response"]
        assert isinstance(response, dict)
        return response

    def fields_of(self, name: str) -> set[str]:
        return set(self.definitions[name]["properties"])


@pytest.fixture(scope="module")
def schemas(spec: dict[str, Any]) -> Schemas:
    return Schemas(spec)


def check_payment(schemas: Schemas, answer: httpx.Response) -> dict[str, Any]:
    payment = schemas.check_ok(answer, "PaymentResponse")
    assert set(payment) == schemas.fields_of("PaymentAnnotation")
    return payment


def test_the_schema_helper_catches_wrong_shapes(schemas: Schemas) -> None:
    with pytest.raises(AssertionError):
        schemas.check("PaymentAnnotation", {"imp_uid": "x"})  # required fields missing
    with pytest.raises(AssertionError):
        schemas.check("AuthAnnotation", {"access_token": "t", "now": "1", "expired_at": 2})
    with pytest.raises(AssertionError):
        schemas.check("ResponseAnnotation", {"code": "0", "message": None})


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    """Auto-registering: most tests here charge customer_uids they never registered."""
    sandbox = SandboxServer(SandboxConfig(hang_seconds=3.0, seed=1, auto_register=True))
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def get_token(client: httpx.Client) -> str:
    answer = client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET})
    token: str = answer.json()["response"]["access_token"]
    return token


@pytest.fixture
def auth(client: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(client)}"}


def charge(
    merchant_uid: str = "m1", customer_uid: str = "c1", **extra: object
) -> dict[str, object]:
    return {
        "customer_uid": customer_uid,
        "merchant_uid": merchant_uid,
        "amount": 9900,
        "name": "베이직 월간 구독",
        **extra,
    }


AGAIN = "/subscribe/payments/again"


# -- getToken and authentication -----------------------------------------------------------------


def test_get_token(client: httpx.Client, schemas: Schemas) -> None:
    first = schemas.check_ok(
        client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET}), "AuthResponse"
    )
    again = schemas.check_ok(
        client.post("/users/getToken", data={"imp_key": KEY, "imp_secret": SECRET}), "AuthResponse"
    )
    assert again["access_token"] == first["access_token"]
    assert again["expired_at"] == first["expired_at"] == first["now"] + 1800
    bad = client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": "wrong"})
    schemas.check_error(bad, 401)


@pytest.mark.parametrize("style", ["bearer", "basic", "raw", "imp-header"])
def test_token_header_styles(client: httpx.Client, schemas: Schemas, style: str) -> None:
    token = get_token(client)
    headers = {
        "bearer": {"Authorization": f"Bearer {token}"},
        "basic": {"Authorization": f"Basic {token}"},  # the form of some of PortOne's examples
        "raw": {"Authorization": token},
        "imp-header": {"X-ImpTokenHeader": token},
    }[style]
    check_payment(schemas, client.post(AGAIN, json=charge(), headers=headers))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_missing_or_unknown_token(
    client: httpx.Client, schemas: Schemas, headers: dict[str, str]
) -> None:
    body = schemas.check_error(client.post(AGAIN, json=charge(), headers=headers), 401)
    assert body["message"] == "Unauthorized"
    schemas.check_error(client.get("/payments/find/m1", headers=headers), 401)


# -- again ---------------------------------------------------------------------------------------


def test_approve(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    body = charge(buyer_name="홍길동", buyer_email="a@example.com", custom_data='{"k":1}')
    payment = check_payment(schemas, client.post(AGAIN, json=body, headers=auth))
    assert payment["status"] == "paid" and payment["amount"] == 9900
    assert payment["imp_uid"].startswith("imps_") and len(payment["imp_uid"]) == 17
    assert (payment["customer_uid"], payment["buyer_name"]) == ("c1", "홍길동")
    assert server.ledger() == [payment]


def test_every_payment_and_key_says_it_is_a_test_one(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str]
) -> None:
    """PortOne's ``sandbox`` field (테스트 결제 여부 / 테스트 빌링키 여부): true for a test channel."""
    paid = check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    looked_up = check_payment(schemas, client.get(f"/payments/{paid['imp_uid']}", headers=auth))
    key = check_customer(schemas, client.get("/subscribe/customers/c1", headers=auth))
    assert paid["sandbox"] is looked_up["sandbox"] is key["sandbox"] is True


def test_form_encoded_again(client: httpx.Client, schemas: Schemas, auth: dict[str, str]) -> None:
    body = {**charge(amount="55000", card_quota="3"), "buyer_tel": "010-1234-5678"}
    payment = check_payment(schemas, client.post(AGAIN, data=body, headers=auth))
    assert (payment["amount"], payment["card_quota"], payment["buyer_tel"]) == (
        55000,
        3,
        "010-1234-5678",
    )


def test_chunked_body(client: httpx.Client, schemas: Schemas, auth: dict[str, str]) -> None:
    raw = json.dumps(charge()).encode()
    chunks = iter([raw[:10], raw[10:]])
    headers = {**auth, "Content-Type": "application/json"}
    check_payment(schemas, client.post(AGAIN, content=chunks, headers=headers))


def test_paid_twice_is_refused(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    refused = schemas.check_error(client.post(AGAIN, json=charge(), headers=auth), 200)
    assert "이미" in refused["message"]
    assert len(server.ledger()) == 1


def test_decline(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["decline:분실신고 카드"])
    payment = check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    assert (payment["status"], payment["fail_reason"]) == ("failed", "분실신고 카드")
    assert payment["paid_at"] == 0 and payment["failed_at"] > 0


@pytest.mark.parametrize("behavior", ["refuse:한도초과", "unknown_customer"])
def test_refusals(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    behavior: str,
) -> None:
    server.script(customer_uid=None, behaviors=[behavior])
    schemas.check_error(client.post(AGAIN, json=charge(), headers=auth), 200)
    assert server.ledger() == []


@pytest.mark.parametrize(
    "body",
    [
        charge(merchant_uid="m" * 41),
        charge(customer_uid="c" * 81),
        charge(amount=99.5),
        charge(amount=0),
        charge(name="가" * 41),
        charge(buyer_name="n" * 17),
        charge(card_quota=3),
        {"customer_uid": "c1"},
    ],
)
def test_validation_errors(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    body: dict[str, object],
) -> None:
    schemas.check_error(client.post(AGAIN, json=body, headers=auth), 200)
    assert server.ledger() == []


def test_malformed_bodies(client: httpx.Client, schemas: Schemas, auth: dict[str, str]) -> None:
    json_headers = {**auth, "Content-Type": "application/json"}
    schemas.check_error(client.post(AGAIN, content=b"{not json", headers=json_headers), 200)
    schemas.check_error(client.post(AGAIN, content=b"[1]", headers=json_headers), 200)
    form_headers = {**auth, "Content-Type": "application/x-www-form-urlencoded"}
    schemas.check_error(client.post(AGAIN, content=b"a=%FF", headers=form_headers), 200)


def test_unknown_paths_are_json_404(client: httpx.Client, schemas: Schemas) -> None:
    schemas.check_error(client.get("/no/such/path"), 404)
    schemas.check_error(client.post("/payments/prepare", json={}), 404)
    answer = client.request("OPTIONS", "/payments/x")
    assert answer.status_code == 501 and answer.json()["code"] == -1


def test_garbage_request_line_gets_json_and_the_server_lives(
    server: SandboxServer, client: httpx.Client
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"code":-1' in answer.replace(b" ", b"")
    assert client.get("/__sandbox__/stats").status_code == 200


def test_keep_alive_serves_many_requests_on_one_connection(server: SandboxServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    request = b"GET /__sandbox__/stats HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        for _ in range(3):
            raw.sendall(request)
            head = raw.recv(65536)
            assert head.startswith(b"HTTP/1.1 200") and b"Content-Length:" in head
            assert b"Connection: close" not in head


# -- faults at the socket ------------------------------------------------------------------------


def test_commit_then_timeout(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["commit_then_timeout"])
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(AGAIN, json=charge(), headers=auth, timeout=httpx.Timeout(5.0, read=0.5))
    assert time.monotonic() - started < 2.5
    assert [p["status"] for p in server.ledger()] == ["paid"]
    found = check_payment(schemas, client.get("/payments/find/m1/paid", headers=auth))
    assert found["imp_uid"] == server.ledger()[0]["imp_uid"]


def test_commit_then_timeout_closes_after_hang_seconds(
    client: httpx.Client, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["commit_then_timeout"])
    started = time.monotonic()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(AGAIN, json=charge(), headers=auth, timeout=10.0)
    assert 2.5 < time.monotonic() - started < 8  # hang_seconds=3, then the connection closes


def test_commit_then_reset(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["commit_then_reset"])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as caught:
        client.post(AGAIN, json=charge(), headers=auth)
    assert "reset" in str(caught.value).lower() or isinstance(caught.value, httpx.ReadError)
    assert [p["status"] for p in server.ledger()] == ["paid"]
    check_payment(schemas, client.get("/payments/find/m1", headers=auth))


def test_commit_then_reset_is_a_tcp_reset(server: SandboxServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.script(customer_uid="c1", behaviors=["commit_then_reset"])
    body = json.dumps(charge()).encode()
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        f"POST {AGAIN} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(request)
        with pytest.raises(ConnectionResetError):
            raw.recv(4096)


def test_error_500(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["error_500"])
    schemas.check_error(client.post(AGAIN, json=charge(), headers=auth), 500)
    assert server.ledger() == []
    check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))


def test_token_expired(client: httpx.Client, schemas: Schemas, server: SandboxServer) -> None:
    old = get_token(client)
    server.script(customer_uid="c1", behaviors=["token_expired"])
    headers = {"Authorization": f"Bearer {old}"}
    schemas.check_error(client.post(AGAIN, json=charge(), headers=headers), 401)
    assert server.ledger() == []
    new = get_token(client)
    assert new != old
    check_payment(schemas, client.post(AGAIN, json=charge(), headers={"Authorization": new}))


def test_expire_tokens(client: httpx.Client, schemas: Schemas, server: SandboxServer) -> None:
    old = get_token(client)
    server.expire_tokens()
    schemas.check_error(client.get("/payments/find/m1", headers={"Authorization": old}), 401)
    assert get_token(client) != old


def test_latency(client: httpx.Client, auth: dict[str, str], server: SandboxServer) -> None:
    server.script(customer_uid="c1", behaviors=["latency:300"])
    started = time.monotonic()
    assert client.post(AGAIN, json=charge(), headers=auth).json()["code"] == 0
    assert time.monotonic() - started >= 0.3
    server.set_latency(ms=300)
    started = time.monotonic()
    assert client.get("/payments/find/m1", headers=auth).status_code == 200
    assert time.monotonic() - started >= 0.3


AGAIN_COUNTER = "POST /subscribe/payments/again"


def test_a_slow_call_does_not_block_other_connections(
    server: SandboxServer, auth: dict[str, str]
) -> None:
    server.script(customer_uid="slow", behaviors=["latency:5000"])

    def one(customer_uid: str, merchant_uid: str) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            body = {**charge(merchant_uid), "customer_uid": customer_uid}
            return own.post(AGAIN, json=body, headers=auth).json()["code"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(one, "slow", "m-slow")
        while AGAIN_COUNTER not in server.stats()["requests"]:  # counted on arrival
            time.sleep(0.01)  # the slow call has arrived and is sleeping
        assert one("fast", "m-fast") == 0
        assert not slow.done()  # the fast call was answered while the slow one still waits
        assert slow.result() == 0


def test_concurrent_charges_of_one_merchant_uid_pay_once(
    server: SandboxServer, auth: dict[str, str]
) -> None:
    barrier = threading.Barrier(20)

    def one(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=10) as own:
            barrier.wait()
            return own.post(AGAIN, json=charge("race"), headers=auth).json()["code"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(one, range(20)))
    assert codes == [-1] * 19 + [0]
    assert [p["status"] for p in server.ledger()] == ["paid"]


def test_stop_releases_held_connections() -> None:
    sandbox = SandboxServer(SandboxConfig(hang_seconds=60.0, auto_register=True)).start()
    token = get_token(httpx.Client(base_url=sandbox.url))
    sandbox.script(customer_uid=None, behaviors=["commit_then_timeout"])
    errors: list[BaseException] = []

    def held() -> None:
        try:
            httpx.post(
                f"{sandbox.url}{AGAIN}", json=charge(), headers={"Authorization": token}, timeout=30
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=held)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    sandbox.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and errors
    assert time.monotonic() - started < 5


# -- lookups -------------------------------------------------------------------------------------


def test_lookups(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    server.script(customer_uid="c1", behaviors=["decline"])
    failed = check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    paid = check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    assert check_payment(schemas, client.get("/payments/find/m1", headers=auth))["imp_uid"] in (
        paid["imp_uid"],
        failed["imp_uid"],
    )
    by_status = check_payment(schemas, client.get("/payments/find/m1/paid", headers=auth))
    assert by_status["imp_uid"] == paid["imp_uid"]
    assert (
        check_payment(schemas, client.get("/payments/find/m1/failed", headers=auth))["imp_uid"]
        == (failed["imp_uid"])
    )
    schemas.check_error(client.get("/payments/find/m1/cancelled", headers=auth), 404)
    schemas.check_error(client.get("/payments/find/nothing/paid", headers=auth), 404)
    schemas.check_error(client.get("/payments/find/m1/bogus", headers=auth), 200)

    page = schemas.check_ok(client.get("/payments/findAll/m1", headers=auth), "PaymentListResponse")
    assert page["total"] == 2 and {p["imp_uid"] for p in page["list"]} == {
        paid["imp_uid"],
        failed["imp_uid"],
    }
    assert all(set(p) == schemas.fields_of("PaymentAnnotation") for p in page["list"])
    one = schemas.check_ok(
        client.get("/payments/findAll/m1/failed?page=1&limit=1&sorting=started", headers=auth),
        "PaymentListResponse",
    )
    assert (one["total"], one["previous"], one["next"]) == (1, 0, 0)
    schemas.check_error(client.get("/payments/findAll/nothing", headers=auth), 404)
    schemas.check_error(client.get("/payments/findAll/m1?limit=5000", headers=auth), 200)

    by_imp = client.get(f"/payments/{paid['imp_uid']}?include_sandbox=true", headers=auth)
    assert check_payment(schemas, by_imp) == paid
    schemas.check_error(client.get("/payments/imps_000000000000", headers=auth), 404)


# -- billing keys --------------------------------------------------------------------------------

CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2099-12", "birth": "900101"}


def check_customer(schemas: Schemas, answer: httpx.Response) -> dict[str, Any]:
    customer = schemas.check_ok(answer, "CustomerResponse")
    assert set(customer) == schemas.fields_of("CustomerAnnotation")
    return customer


def test_billing_keys(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    body = {**CARD, "pwd_2digit": "12", "customer_name": "홍길동", "customer_tel": "01012345678"}
    issued = check_customer(
        schemas, client.post("/subscribe/customers/cust1", json=body, headers=auth)
    )
    assert issued["card_number"] == "411111******1111"
    assert issued["customer_name"] == "홍길동"
    form = check_customer(
        schemas, client.post("/subscribe/customers/cust2", data=CARD, headers=auth)
    )
    assert form["customer_uid"] == "cust2"
    assert check_customer(schemas, client.get("/subscribe/customers/cust1", headers=auth)) == issued
    deleted = client.request("DELETE", "/subscribe/customers/cust1?reason=test", headers=auth)
    assert check_customer(schemas, deleted)["customer_uid"] == "cust1"
    schemas.check_error(client.get("/subscribe/customers/cust1", headers=auth), 404)
    schemas.check_error(client.request("DELETE", "/subscribe/customers/cust1", headers=auth), 404)
    refused = schemas.check_error(
        client.post(AGAIN, json=charge(customer_uid="cust1"), headers=auth), 200
    )
    assert "customer_uid" in refused["message"]
    assert server.ledger() == []


@pytest.mark.parametrize(
    "changes",
    [
        {"card_number": "4111-1111-1111-1112"},
        {"card_number": "1234"},
        {"expiry": "2001-01"},
        {"expiry": "2030/01"},
        {"birth": "19900101x"},
    ],
)
def test_bad_cards_are_refused(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], changes: dict[str, str]
) -> None:
    answer = client.post("/subscribe/customers/bad", json={**CARD, **changes}, headers=auth)
    schemas.check_error(answer, 200)


def test_by_default_a_customer_never_registered_is_refused_as_portone_refuses_it(
    schemas: Schemas,
) -> None:
    with SandboxServer(SandboxConfig()) as sandbox, httpx.Client(base_url=sandbox.url) as client:
        headers = {"Authorization": get_token(client)}
        refused = schemas.check_error(client.post(AGAIN, json=charge(), headers=headers), 200)
        assert refused["code"] == -1 and "등록되지 않은 구매자입니다" in refused["message"]
        schemas.check_error(client.get("/subscribe/customers/c1", headers=headers), 404)
        schemas.check_error(
            client.request("DELETE", "/subscribe/customers/c1", headers=headers), 404
        )
        assert sandbox.ledger() == []
        sandbox.register_customer("c1")
        check_payment(schemas, client.post(AGAIN, json=charge(), headers=headers))


def test_auto_register_invents_a_test_card_key_for_any_customer(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str]
) -> None:
    paid = check_payment(
        schemas, client.post(AGAIN, json=charge(customer_uid="anyone"), headers=auth)
    )
    assert (paid["status"], paid["card_number"]) == ("paid", "411111******1111")
    key = check_customer(schemas, client.get("/subscribe/customers/other", headers=auth))
    assert key["customer_uid"] == "other"


# -- onetime (key-in payment, key issued with it) ------------------------------------------------

ONETIME = "/subscribe/payments/onetime"


def onetime(customer_uid: str | None = "new1", merchant_uid: str = "first1") -> dict[str, object]:
    body = {**charge(merchant_uid, customer_uid or ""), **CARD, "pwd_2digit": "12"}
    if customer_uid is None:
        del body["customer_uid"]
    return body


def test_onetime_pays_and_issues_the_key_the_next_again_uses(schemas: Schemas) -> None:
    with (
        SandboxServer(SandboxConfig()) as sandbox,
        httpx.Client(base_url=sandbox.url) as client,
    ):
        auth = {"Authorization": get_token(client)}
        paid = check_payment(schemas, client.post(ONETIME, json=onetime(), headers=auth))
        assert (paid["status"], paid["merchant_uid"], paid["amount"]) == ("paid", "first1", 9900)
        assert (paid["customer_uid"], paid["customer_uid_usage"]) == ("new1", "issue")
        assert paid["card_number"] == "411111******1111"
        key = check_customer(schemas, client.get("/subscribe/customers/new1", headers=auth))
        assert key["card_number"] == "411111******1111"
        renewal = client.post(AGAIN, json=charge("renewal1", "new1"), headers=auth)
        assert check_payment(schemas, renewal)["status"] == "paid"
        replay = schemas.check_error(client.post(ONETIME, json=onetime(), headers=auth), 200)
        assert "이미" in replay["message"]
        assert [p["merchant_uid"] for p in sandbox.ledger()] == ["first1", "renewal1"]


def test_onetime_without_customer_uid_pays_and_issues_nothing(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str]
) -> None:
    answer = client.post(ONETIME, data=onetime(None), headers=auth)  # form-encoded, too
    paid = check_payment(schemas, answer)
    assert (paid["status"], paid["customer_uid"], paid["customer_uid_usage"]) == (
        "paid",
        None,
        None,
    )


def test_a_declined_onetime_issues_no_key(schemas: Schemas) -> None:
    with (
        SandboxServer(SandboxConfig()) as sandbox,
        httpx.Client(base_url=sandbox.url) as client,
    ):
        auth = {"Authorization": get_token(client)}
        sandbox.script(customer_uid="new1", behaviors=["decline:한도초과"])
        failed = check_payment(schemas, client.post(ONETIME, json=onetime(), headers=auth))
        assert (failed["status"], failed["fail_reason"]) == ("failed", "한도초과")
        schemas.check_error(client.get("/subscribe/customers/new1", headers=auth), 404)


@pytest.mark.parametrize("changes", [{"card_number": "4111-1111-1111-1112"}, {"expiry": "2001-01"}])
def test_onetime_with_a_bad_card_is_refused_and_records_nothing(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    changes: dict[str, str],
) -> None:
    refused = client.post(ONETIME, json={**onetime(), **changes}, headers=auth)
    schemas.check_error(refused, 200)
    assert server.ledger() == []


# -- cancel --------------------------------------------------------------------------------------


def test_cancel(client: httpx.Client, schemas: Schemas, auth: dict[str, str]) -> None:
    paid = check_payment(schemas, client.post(AGAIN, json=charge(), headers=auth))
    partial = check_payment(
        schemas,
        client.post(
            "/payments/cancel",
            json={"imp_uid": paid["imp_uid"], "amount": 1000, "reason": "부분", "checksum": 9900},
            headers=auth,
        ),
    )
    assert (partial["status"], partial["cancel_amount"]) == ("paid", 1000)
    for record in partial["cancel_history"]:
        schemas.check("PaymentCancelAnnotation", record)
    over = client.post(
        "/payments/cancel", json={"merchant_uid": "m1", "amount": 9000}, headers=auth
    )
    schemas.check_error(over, 200)
    wrong_checksum = {"merchant_uid": "m1", "checksum": 9900}
    negative = {"merchant_uid": "m1", "amount": -1}
    schemas.check_error(client.post("/payments/cancel", json=negative, headers=auth), 200)
    schemas.check_error(client.post("/payments/cancel", json=wrong_checksum, headers=auth), 200)
    full = check_payment(
        schemas,
        client.post(
            "/payments/cancel", data={"merchant_uid": "m1", "reason": "전액"}, headers=auth
        ),
    )
    assert (full["status"], full["cancel_amount"], len(full["cancel_history"])) == (
        "cancelled",
        9900,
        2,
    )
    schemas.check_error(
        client.post("/payments/cancel", json={"imp_uid": paid["imp_uid"]}, headers=auth), 200
    )
    schemas.check_error(client.post("/payments/cancel", json={}, headers=auth), 200)
    assert check_payment(schemas, client.get("/payments/find/m1/cancelled", headers=auth))


# -- admin ---------------------------------------------------------------------------------------


def test_admin_endpoints(client: httpx.Client, auth: dict[str, str]) -> None:
    def admin(path: str, body: object = None) -> httpx.Response:
        return client.post(f"/__sandbox__/{path}", json=body)

    assert admin("script", {"customer_uid": "c1", "behaviors": ["decline:A"]}).json() == {
        "ok": True
    }
    assert admin("script", {"customer_uid": None, "behaviors": ["refuse:B"]}).status_code == 200
    assert admin("default", {"customer_uid": "c1", "behavior": "decline:C"}).status_code == 200
    assert (
        client.post(AGAIN, json=charge("m1"), headers=auth).json()["response"]["fail_reason"] == "A"
    )
    assert client.post(AGAIN, json=charge("m2"), headers=auth).json()["message"] == "B"
    assert (
        client.post(AGAIN, json=charge("m3"), headers=auth).json()["response"]["fail_reason"] == "C"
    )
    assert admin("faults", {"faults": {"error_500": 1.0}, "seed": 3}).status_code == 200
    assert client.post(AGAIN, json=charge("m4"), headers=auth).status_code == 500
    assert admin("faults", {"faults": {}, "seed": None}).status_code == 200
    assert admin("latency", {"ms": 0}).status_code == 200
    ledger = client.get("/__sandbox__/ledger").json()
    assert [p["merchant_uid"] for p in ledger["payments"]] == ["m1", "m3"]
    stats = client.get("/__sandbox__/stats").json()
    assert stats["payments"] == {"paid": 0, "failed": 2, "cancelled": 0}
    assert stats["faults"] == {"decline": 2, "refuse": 1, "error_500": 1}
    assert stats["requests"]["POST /subscribe/payments/again"] == 4
    assert admin("expire-tokens").json()["ok"] is True
    assert client.post(AGAIN, json=charge("m5"), headers=auth).status_code == 401
    assert admin("reset").status_code == 200
    assert client.get("/__sandbox__/ledger").json() == {"payments": []}
    bad = admin("script", {"customer_uid": "c1", "behaviors": ["explode"]})
    assert bad.status_code == 400 and "explode" in bad.json()["message"]


def test_seeded_faults_over_http_are_reproducible() -> None:
    def run() -> list[tuple[int, object]]:
        with SandboxServer(SandboxConfig(seed=9, auto_register=True)) as sandbox:
            sandbox.set_faults({"error_500": 0.3, "decline": 0.3}, seed=7)
            with httpx.Client(base_url=sandbox.url, timeout=5) as client:
                headers = {"Authorization": get_token(client)}
                answers = [
                    client.post(AGAIN, json=charge(f"m{i}"), headers=headers) for i in range(30)
                ]
                outcomes = [
                    (a.status_code, (a.json()["response"] or {}).get("status")) for a in answers
                ]
                imp_uids = [p["imp_uid"] for p in sandbox.ledger()]
                return [*outcomes, (0, imp_uids)]

    first = run()
    assert first == run()
    assert {outcome for outcome in first[:-1]} == {(200, "paid"), (200, "failed"), (500, None)}


# -- webhooks ------------------------------------------------------------------------------------


class Receiver:
    """A notice_url receiver on a free port that keeps what it was sent."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.arrived:
                    owner.notices.append(json.loads(body))
                    owner.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/portone/webhook"

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.notices) >= count, timeout=5)
            return list(self.notices)


def test_webhooks() -> None:
    receiver = Receiver()
    config = SandboxConfig(notice_url=receiver.url, hang_seconds=0.2, auto_register=True)
    try:
        with SandboxServer(config) as sandbox, httpx.Client(base_url=sandbox.url) as client:
            headers = {"Authorization": get_token(client)}
            sandbox.script(customer_uid="c1", behaviors=["decline", "approve"])
            client.post(AGAIN, json=charge("m1"), headers=headers)  # declined: no webhook
            paid = client.post(AGAIN, json=charge("m1"), headers=headers).json()["response"]
            sandbox.script(customer_uid="c1", behaviors=["commit_then_timeout"])
            with pytest.raises(httpx.HTTPError):
                client.post(AGAIN, json=charge("m2"), headers=headers, timeout=0.5)
            client.post("/payments/cancel", json={"imp_uid": paid["imp_uid"]}, headers=headers)
            notices = receiver.wait_for(3)
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()
    assert [(n["merchant_uid"], n["status"]) for n in notices] == [
        ("m1", "paid"),
        ("m2", "paid"),
        ("m1", "cancelled"),
    ]
    assert notices[0] == {"imp_uid": paid["imp_uid"], "merchant_uid": "m1", "status": "paid"}


# -- secrets -------------------------------------------------------------------------------------


def test_verbose_logs_hold_no_card_data_or_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    config = SandboxConfig(verbose=True)
    with SandboxServer(config) as sandbox, httpx.Client(base_url=sandbox.url) as client:
        token = get_token(client)
        headers = {"Authorization": token}
        client.post("/subscribe/customers/c1", data={**CARD, "pwd_2digit": "37"}, headers=headers)
        client.post(AGAIN, json=charge(), headers=headers)
        client.get("/payments/find/m1", headers=headers)
        ledger = json.dumps(sandbox.ledger())
    logged = capsys.readouterr().err
    assert "POST /subscribe/customers/c1" in logged and "GET /payments/find/m1" in logged
    for secret in ("4111-1111-1111-1111", "4111111111111111", "900101", SECRET, token):
        assert secret not in logged
        assert secret not in ledger


# -- the README's curl examples (issue 14, item 13) -----------------------------------------------


def readme_sandbox_curls() -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    return [
        line for line in readme.splitlines() if line.startswith("curl ") and "__sandbox__" in line
    ]


def test_the_readme_curl_examples_work(server: SandboxServer) -> None:
    """``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``: the control endpoints
    read a body that opens with ``{`` as JSON whatever its content type says."""
    examples = readme_sandbox_curls()
    assert len(examples) >= 3
    where = server.url.removeprefix("http://")
    for example in examples:
        command = [word.replace("localhost:8089", where) for word in shlex.split(example)]
        quiet = ["-s", "-o", "/dev/null", "-w", "%{http_code}"]
        done = subprocess.run(
            [*command, *quiet], capture_output=True, text=True, timeout=10, check=False
        )
        assert done.stdout == "200", (example, done.stdout, done.stderr)
    assert server.stats()["requests"]["POST /__sandbox__/latency"] == 1


# -- several at once: /payments, /subscribe/customers, a key's payments (issue 15.2) ---------


def test_payments_by_several_imp_uids_and_merchant_uids(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str]
) -> None:
    first, second = (
        check_payment(schemas, client.post(AGAIN, json=charge(m), headers=auth)) for m in "ab"
    )
    query = f"imp_uid[]={first['imp_uid']}&imp_uid[]={second['imp_uid']}"
    both = client.get(f"/payments?{query}", headers=auth)
    assert both.status_code == 200
    schemas.check("MultiplePaymentsResponse", both.json())
    assert [p["imp_uid"] for p in both.json()["response"]] == [first["imp_uid"], second["imp_uid"]]
    by_merchant_uid = client.get("/payments?merchant_uid[]=b", headers=auth)
    assert [p["imp_uid"] for p in by_merchant_uid.json()["response"]] == [second["imp_uid"]]
    partly = client.get(f"/payments?imp_uid[]={first['imp_uid']}&imp_uid[]=imps_0", headers=auth)
    assert partly.status_code == 207  # some found (the document's 207)
    schemas.check("MultiplePaymentsResponse", partly.json())
    assert [p["imp_uid"] for p in partly.json()["response"]] == [first["imp_uid"]]
    schemas.check_error(client.get("/payments?imp_uid[]=imps_0", headers=auth), 404)


@pytest.mark.parametrize(
    "query", ["", "?imp_uid[]=", "?" + "&".join(f"imp_uid[]=imps_{n}" for n in range(101))]
)
def test_payments_by_several_ids_refuses_bad_parameters(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], query: str
) -> None:
    schemas.check_error(client.get(f"/payments{query}", headers=auth), 200)
    schemas.check_error(client.get("/payments?imp_uid[]=x"), 401)


def test_several_customers(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], server: SandboxServer
) -> None:
    for uid in ("k1", "k2"):
        server.register_customer(uid)
    strict = SandboxServer(SandboxConfig()).start()
    try:
        strict.register_customer("k1")
        with httpx.Client(base_url=strict.url, timeout=5) as other:
            headers = {"Authorization": get_token(other)}
            both = other.get("/subscribe/customers?customer_uid[]=k1", headers=headers)
            assert both.status_code == 200
            schemas.check("MultipleCustomersResponse", both.json())
            assert [c["customer_uid"] for c in both.json()["response"]] == ["k1"]
            partly = other.get(
                "/subscribe/customers?customer_uid[]=k1&customer_uid[]=no", headers=headers
            )
            assert partly.status_code == 207
            schemas.check("MultipleCustomersResponse", partly.json())
            assert [c["customer_uid"] for c in partly.json()["response"]] == ["k1"]
            none = other.get("/subscribe/customers?customer_uid[]=no", headers=headers)
            schemas.check_error(none, 404)
            schemas.check_error(other.get("/subscribe/customers", headers=headers), 200)
            too_long = "x" * 81
            answer = other.get(f"/subscribe/customers?customer_uid[]={too_long}", headers=headers)
            schemas.check_error(answer, 200)
    finally:
        strict.stop()


def test_a_billing_keys_payments_paged_newest_first(schemas: Schemas) -> None:
    with SandboxServer(SandboxConfig()) as sandbox, httpx.Client(base_url=sandbox.url) as client:
        auth = {"Authorization": get_token(client)}
        sandbox.register_customer("k1")
        sandbox.register_customer("idle")
        for n in range(22):
            client.post(AGAIN, json=charge(f"m{n}", "k1"), headers=auth)
        client.post(AGAIN, json=charge("other", "k2"), headers=auth)  # refused: not k1's
        path = "/subscribe/customers/k1/payments"
        first = schemas.check_ok(client.get(path, headers=auth), "PaymentListResponse")
        assert (first["total"], first["previous"], first["next"]) == (22, 0, 2)
        assert len(first["list"]) == 20 and first["list"][0]["merchant_uid"] == "m21"
        second = schemas.check_ok(client.get(f"{path}?page=2", headers=auth), "PaymentListResponse")
        assert (second["previous"], second["next"]) == (1, 0)
        assert [p["merchant_uid"] for p in second["list"]] == ["m1", "m0"]
        empty = client.get("/subscribe/customers/idle/payments", headers=auth)
        assert schemas.check_ok(empty, "PaymentListResponse")["total"] == 0
        schemas.check_error(client.get("/subscribe/customers/nobody/payments", headers=auth), 404)
        schemas.check_error(client.get(f"{path}?page=0", headers=auth), 200)
        schemas.check_error(client.get(f"{path}?page=x", headers=auth), 200)
        schemas.check_error(client.get(path), 401)


@pytest.mark.parametrize(
    "target",
    ["/payments/status/lost", "/payments/status/paid?limit=1001", "/payments/status/all?sorting=x"],
)
def test_status_lookups_refuse_bad_parameters_with_the_documents_400(
    client: httpx.Client, schemas: Schemas, auth: dict[str, str], target: str
) -> None:
    schemas.check_error(client.get(target, headers=auth), 400)


# -- faults PortOne really has (issue 15.4) ------------------------------------------------------


@pytest.mark.parametrize("scripted", ["customer", "rate"])
def test_ready_stays_ready_when_looked_up(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    scripted: str,
) -> None:
    if scripted == "customer":
        server.script(customer_uid="c1", behaviors=["ready"])
    else:
        server.set_faults({"ready": 1.0}, seed=1)
    with pytest.raises(httpx.ReadTimeout):
        client.post(AGAIN, json=charge(), headers=auth, timeout=0.5)
    found = check_payment(schemas, client.get("/payments/find/m1", headers=auth))
    assert (found["status"], found["paid_at"], found["apply_num"]) == ("ready", 0, None)
    schemas.check_error(client.get("/payments/find/m1/paid", headers=auth), 404)
    assert server.stats()["faults"]["ready"] == 1


def test_notices_are_sent_again_when_asked_for() -> None:
    receiver = Receiver()
    config = SandboxConfig(
        notice_url=receiver.url, notice_retries=2, notice_retry_seconds=0.3, auto_register=True
    )
    try:
        with SandboxServer(config) as sandbox, httpx.Client(base_url=sandbox.url) as client:
            headers = {"Authorization": get_token(client)}
            paid = client.post(AGAIN, json=charge("m1"), headers=headers).json()["response"]
            notices = receiver.wait_for(3)
            time.sleep(0.5)
            assert len(receiver.notices) == 3  # once and twice again, no more
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()
    expected = {"imp_uid": paid["imp_uid"], "merchant_uid": "m1", "status": "paid"}
    assert notices == [expected] * 3


def test_notices_are_sent_once_by_default() -> None:
    receiver = Receiver()
    config = SandboxConfig(notice_url=receiver.url, auto_register=True)
    try:
        with SandboxServer(config) as sandbox, httpx.Client(base_url=sandbox.url) as client:
            headers = {"Authorization": get_token(client)}
            client.post(AGAIN, json=charge("m1"), headers=headers)
            receiver.wait_for(1)
            time.sleep(0.5)
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()
    assert [n["status"] for n in receiver.notices] == ["paid"]


@pytest.mark.parametrize("scripted", ["customer", "rate"])
def test_already_paid_net_cancel_and_console_refund_per_customer_and_by_rate(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    scripted: str,
) -> None:
    """The fault table: each of PortOne's faults scripted for one customer_uid, or rolled."""
    expected = {
        "already_paid": "paid",
        "net_cancel": "cancelled",
        "paid_then_refunded": "cancelled",
    }
    for n, fault in enumerate(expected):
        if scripted == "customer":
            server.script(customer_uid="c1", behaviors=[fault])
        else:
            server.set_faults({fault: 1.0}, seed=1)
        with contextlib.suppress(httpx.ReadTimeout):
            client.post(AGAIN, json=charge(f"f{n}"), headers=auth, timeout=0.5)
        found = check_payment(schemas, client.get(f"/payments/find/f{n}", headers=auth))
        assert found["status"] == expected[fault], fault
    server.set_faults({})
    assert set(expected) <= set(server.stats()["faults"])


@pytest.mark.parametrize(
    ("scripted", "retry_after"), [("rate_limited:7", "7"), ("rate_limited", None), (None, None)]
)
def test_429_with_and_without_retry_after(
    client: httpx.Client,
    schemas: Schemas,
    auth: dict[str, str],
    server: SandboxServer,
    scripted: str | None,
    retry_after: str | None,
) -> None:
    if scripted:
        server.script(customer_uid="c1", behaviors=[scripted])
    else:
        server.set_faults({"rate_limited": 1.0}, seed=1)
    answer = client.post(AGAIN, json=charge(), headers=auth)
    schemas.check_error(answer, 429)
    assert answer.headers.get("Retry-After") == retry_after
    assert server.ledger() == []
