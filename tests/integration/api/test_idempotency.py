"""Idempotency-Key on real PostgreSQL over real HTTP: replay, reuse, and the race of
concurrent requests with one key (threads against the served app)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from billing.db.api_tables import IdempotencyRecord
from billing.db.tables import Subscription
from tests.integration.api.conftest import Api
from tests.integration.api.test_endpoints import error

BODY = {"customer_uid": "cust-i", "plan_id": "monthly"}


def subscriptions(api: Api) -> int:
    with api.app.transaction() as session:
        return int(session.scalar(select(func.count(Subscription.id))) or 0)


def test_same_key_same_body_gets_the_first_answer_and_does_nothing_again(api: Api) -> None:
    api.customer_with_key("cust-i")
    first = api.post("/v1/subscriptions", BODY, idem="order-1")
    again = api.post(
        "/v1/subscriptions", {"plan_id": "monthly", "customer_uid": "cust-i"}, idem="order-1"
    )  # same body, other key order and spacing
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert subscriptions(api) == 1
    other = api.post("/v1/subscriptions", BODY, idem="order-2")  # a new key: a new request
    assert other.status_code == 201 and subscriptions(api) == 2
    plain = api.post("/v1/subscriptions", BODY)  # no key: no protection
    assert plain.status_code == 201 and subscriptions(api) == 3


def test_a_refused_request_is_replayed_too(api: Api) -> None:
    sid = api.post("/v1/subscriptions", BODY, idem="x").status_code
    assert sid == 404  # no such customer yet: the answer is kept
    api.customer_with_key("cust-i")
    replay = api.post("/v1/subscriptions", BODY, idem="x")
    error(replay, 404, "not_found")
    assert replay.headers["Idempotent-Replayed"] == "true" and subscriptions(api) == 0


def test_same_key_with_another_body_or_path_is_409(api: Api) -> None:
    api.customer_with_key("cust-i")
    assert api.post("/v1/subscriptions", BODY, idem="k").status_code == 201
    changed = api.post("/v1/subscriptions", {**BODY, "plan_id": "yearly"}, idem="k")
    assert "different request" in error(changed, 409, "idempotency_key_reused")
    elsewhere = api.post("/v1/subscriptions/1/pause", idem="k")
    error(elsewhere, 409, "idempotency_key_reused")
    assert subscriptions(api) == 1
    assert api.get("/v1/subscriptions/1").json()["status"] == "active"  # not paused


def test_invalid_requests_do_not_use_up_the_key(api: Api) -> None:
    api.customer_with_key("cust-i")
    error(
        api.post("/v1/subscriptions", {"customer_uid": "cust-i"}, idem="k"), 422, "invalid_request"
    )
    error(api.post("/v1/subscriptions", BODY, idem="k", key=api.read_only_key), 403, "forbidden")
    assert api.post("/v1/subscriptions", BODY, idem="k").status_code == 201


def test_key_length(api: Api) -> None:
    api.customer_with_key("cust-i")
    long = api.post("/v1/subscriptions", BODY, idem="k" * 256)
    assert error(long, 422, "invalid_request").startswith("Idempotency-Key: ")
    assert api.post("/v1/subscriptions", BODY, idem="k" * 255).status_code == 201


def test_keys_expire_after_24_hours(api: Api) -> None:
    api.customer_with_key("cust-i")
    assert api.post("/v1/subscriptions", BODY, idem="day").status_code == 201
    with api.app.transaction() as session:
        session.execute(
            update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    again = api.post("/v1/subscriptions", BODY, idem="day")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert subscriptions(api) == 2


def test_a_request_that_died_is_reported_not_run_again(api: Api) -> None:
    api.customer_with_key("cust-i")
    assert api.post("/v1/subscriptions", BODY, idem="dead").status_code == 201
    with api.app.transaction() as session:  # as if the process died before recording it
        session.execute(
            update(IdempotencyRecord).values(
                state="in_progress",
                response_status=None,
                response_body=None,
                locked_until=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    answer = api.post("/v1/subscriptions", BODY, idem="dead")
    assert "may or may not" in error(answer, 409, "idempotency_key_interrupted")
    assert subscriptions(api) == 1


def race(api: Api, path: str, body: Any, key: str, threads: int) -> list[httpx.Response]:
    """``threads`` clients released together, each sending the same request."""
    gate = threading.Barrier(threads)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            gate.wait()
            answer = client.post(
                api.url + path,
                json=body,
                headers={"Authorization": f"Bearer {api.key}", "Idempotency-Key": key},
            )
        with lock:
            answers.append(answer)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(answers) == threads
    return answers


def test_concurrent_requests_with_one_key_have_one_effect(api: Api) -> None:
    api.customer_with_key("cust-i")
    for round_ in range(5):
        answers = race(api, "/v1/subscriptions", BODY, f"race-{round_}", threads=8)
        assert subscriptions(api) == round_ + 1
        created = [a for a in answers if a.status_code == 201]
        assert created and all(a.json() == created[0].json() for a in created)
        for answer in answers:
            if answer.status_code != 201:
                error(answer, 409, "idempotency_key_in_progress")
    with api.app.transaction() as session:
        assert session.scalar(select(func.count(IdempotencyRecord.id))) == 5


def test_the_second_of_two_concurrent_requests_is_told_it_is_in_progress(api: Api) -> None:
    """PortOne answering slowly keeps the first request running while the others arrive."""
    api.customer_with_key("cust-i")
    api.sandbox.set_latency(700)
    answers = race(api, "/v1/customers/cust-i/billing-key/verify", None, "verify-1", threads=4)
    ran = [a for a in answers if a.status_code == 200]
    assert len(ran) == 1 and "Idempotent-Replayed" not in ran[0].headers
    for answer in answers:
        if answer is not ran[0]:
            error(answer, 409, "idempotency_key_in_progress")
    assert len(api.events("billing_key_verified")) == 1
    replay = api.post("/v1/customers/cust-i/billing-key/verify", idem="verify-1")
    assert replay.json() == ran[0].json() and replay.headers["Idempotent-Replayed"] == "true"
