"""Outgoing webhooks (issue 14, item 10): Standard Webhooks signatures checked by a receiver
written from that standard, two secrets while rotating, the legacy header for one release,
and no notice to a loopback, private or link-local address unless the catalog allows it."""

from __future__ import annotations

import base64
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from billing.catalog_file import parse_catalog
from billing.errors import CatalogError
from billing.notify import Sender
from billing.services.delivery import NoticeWork
from billing.services.ports import DeliveryError
from tests.receivers import WebhookReceiver, standard_webhooks_valid

NEW = "whsec_" + base64.b64encode(b"the new key, 24 bytes ok").decode()
OLD = "whsec_" + base64.b64encode(b"the old key of last year").decode()


def work(url: str, *, allow_private: bool = True, event_id: str = "evt_1") -> NoticeWork:
    config = {"url": url, "secret_env": "HOOK_SECRET"}
    if allow_private:
        config["allow_private"] = "True"
    payload = {
        "id": event_id,
        "type": "payment_failed",
        "created_at": "2027-01-30T15:30:00+00:00",
        "data": {"subscription": {"id": 1}},
    }
    return NoticeWork(1, 1, event_id, "payment_failed", "webhook", config, None, payload, 1)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(OLD).start()
    yield started
    started.stop()


def test_a_notice_is_signed_in_the_standard_webhooks_form(receiver: WebhookReceiver) -> None:
    sender = Sender(httpx.Client(), {"HOOK_SECRET": OLD})
    sender.send(work(receiver.url))
    assert receiver.bad_signatures == 0 and list(receiver.events) == ["evt_1"]


def test_two_secrets_while_rotating(receiver: WebhookReceiver) -> None:
    """The variable holds the new secret and the old one: a receiver that knows either
    accepts; the legacy header is signed with the first."""
    receiver.legacy_secret = NEW
    Sender(httpx.Client(), {"HOOK_SECRET": f"{NEW} {OLD}"}).send(work(receiver.url))
    assert receiver.bad_signatures == 0
    receiver.secret = NEW  # the receiver moved to the new secret
    Sender(httpx.Client(), {"HOOK_SECRET": f"{NEW} {OLD}"}).send(work(receiver.url, event_id="e2"))
    assert receiver.bad_signatures == 0 and sorted(receiver.events) == ["e2", "evt_1"]


def test_a_replay_outside_the_tolerance_fails_the_receivers_check() -> None:
    captured: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(204)

    old_clock = Sender(
        httpx.Client(transport=httpx.MockTransport(answer)),
        {"HOOK_SECRET": OLD},
        clock=lambda: time.time() - 3600,
    )
    old_clock.send(work("https://hooks.example/x", allow_private=True))
    [request] = captured
    headers = dict(request.headers)
    assert headers["webhook-id"] == "evt_1"
    assert not standard_webhooks_valid(OLD, headers, request.content)  # an hour old: refused
    assert standard_webhooks_valid(OLD, headers, request.content, tolerance=7200)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://[::1]:8000/",
        "http://localhost:8000/",
        "http://192.168.0.10/",
    ],
)
def test_a_catalog_naming_a_private_address_is_refused(url: str) -> None:
    text = f"notify: [{{type: webhook, url: '{url}', secret_env: S}}]\nplans: []\n"
    with pytest.raises(CatalogError, match="not a public address"):
        parse_catalog(text, "plans.yaml", "Asia/Seoul")
    allowed = text.replace("secret_env: S", "secret_env: S, allow_private: true")
    assert parse_catalog(allowed, "plans.yaml", "Asia/Seoul").notify[0].get("url") == url


def test_a_name_that_resolves_to_a_private_address_is_not_sent(
    receiver: WebhookReceiver,
) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost")
    sender = Sender(httpx.Client(), {"HOOK_SECRET": OLD})
    with pytest.raises(DeliveryError, match=r"resolves to 127\.0\.0\.1, not a public address"):
        sender.send(work(url, allow_private=False))
    internal = Sender(
        httpx.Client(), {"HOOK_SECRET": OLD}, resolver=lambda host, port: ["10.0.0.7"]
    )
    with pytest.raises(DeliveryError, match=r"resolves to 10\.0\.0\.7"):
        internal.send(work("https://hooks.merchant.example/x", allow_private=False))
    assert receiver.deliveries == []
    sender.send(work(url, allow_private=True))
    assert len(receiver.deliveries) == 1


def readme_verifier() -> Callable[..., bool]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("Verifying in Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(block), namespace)  # the README's own example
    return cast(Callable[..., bool], namespace["verify"])


def test_the_readme_verifier_accepts_a_real_notice_and_refuses_a_tampered_one() -> None:
    captured: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: captured.append(r) or httpx.Response(204))
    Sender(httpx.Client(transport=transport), {"HOOK_SECRET": f"{NEW} {OLD}"}).send(
        work("https://hooks.example/x")
    )
    [request] = captured
    headers, verify = dict(request.headers), readme_verifier()
    assert verify(OLD, headers, request.content) and verify(NEW, headers, request.content)
    assert not verify(OLD, headers, request.content.replace(b"payment_failed", b"payment_faile"))
    assert not verify(
        "whsec_" + base64.b64encode(b"someone else").decode(), headers, request.content
    )
    assert verify("plain text secret", headers, request.content) is False
