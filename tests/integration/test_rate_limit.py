"""BILLING_PORTONE_MAX_RPS: one ceiling on calls to PortOne for every process, in Redis.

The ceiling is checked from above only (a busy machine makes fewer calls, never more), and a
pause from a 429 from below (a busy machine waits longer, never shorter): neither assertion
depends on how fast this machine is today. How close to the ceiling the product gets is
measured by the benchmark, not here.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from billing.bootstrap import make_gateway, rate_limit
from billing.config import load_settings
from billing.domain.answers import Outcome
from billing.domain.charges import ChargeRequest
from billing.errors import ConfigError
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.portone.ratelimit import RedisBucket, retry_after
from billing.sandbox import SandboxConfig, SandboxServer

KEY, SECRET = "sandbox_key", "sandbox_secret"
TAKER = """
import json, sys, time
import redis
from billing.portone.ratelimit import RedisBucket
url, key, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
bucket = RedisBucket(redis.Redis.from_url(url), rate, key=key)
print("ready", flush=True)
sys.stdin.readline()
taken, end = [], time.time() + seconds
while time.time() < end:
    bucket.take(None)
    taken.append(time.time())
print(json.dumps(taken))
"""


@pytest.fixture
def key() -> str:
    return f"billing-test:bucket:{secrets.token_hex(4)}"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(auto_register=True)) as server:
        yield server


def request(merchant_uid: str, customer_uid: str = "cust-r") -> ChargeRequest:
    return ChargeRequest(customer_uid, merchant_uid, 9900, "월간")


def test_two_processes_together_stay_under_the_ceiling(redis_url: str, key: str) -> None:
    rate, seconds = 40.0, 3.0
    command = [sys.executable, "-c", TAKER, redis_url, key, str(rate), str(seconds)]
    takers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for taker in takers:
        assert taker.stdout is not None and taker.stdout.readline().strip() == "ready"
    for taker in takers:
        assert taker.stdin is not None
        taker.stdin.write("go\n")
        taker.stdin.flush()
    taken = sorted(t for taker in takers for t in json.loads(taker.communicate(timeout=60)[0]))
    span = taken[-1] - taken[0]
    burst = rate  # one second's worth may go at once after a quiet spell
    assert len(taken) <= rate * span + burst + 1, (len(taken), span)
    assert len(taken) > burst  # both went on taking after the burst: the bucket refills


def test_a_429_with_retry_after_pauses_every_caller_of_the_ceiling(
    redis_url: str, key: str, sandbox: SandboxServer
) -> None:
    shared = redis.Redis.from_url(redis_url)
    seen, other = (
        PortOneClient(sandbox.url, KEY, SECRET, limit=RedisBucket(shared, 1000, key=key))
        for _ in range(2)
    )
    try:
        other.token()
        sandbox.script("cust-429", ["rate_limited:2"])
        answer = PortOneGateway(seen).charge(request("m-429", "cust-429"))
        assert (answer.outcome, answer.http_status) == (Outcome.TRANSIENT, 429)
        began = time.monotonic()
        assert other.find_paid("m-none").status == 404  # another client: it waited too
        assert time.monotonic() - began >= 1.5
    finally:
        seen.close()
        other.close()
    assert sandbox.ledger() == []


def test_a_call_that_would_wait_past_its_deadline_is_not_sent(
    redis_url: str, key: str, sandbox: SandboxServer
) -> None:
    bucket = RedisBucket(redis.Redis.from_url(redis_url), 1, burst=1, key=key)
    client = PortOneClient(sandbox.url, KEY, SECRET, limit=bucket)
    try:
        client.token()  # the one token of the burst
        answer = PortOneGateway(client).charge(request("m-late"), send_within=0.2)
    finally:
        client.close()
    assert answer.outcome == Outcome.TRANSIENT and "rate ceiling" in answer.reason
    assert sandbox.ledger() == []


def test_without_redis_the_ceiling_is_not_enforced_and_says_so(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    client = PortOneClient(sandbox.url, KEY, SECRET, limit=RedisBucket(nowhere, 1, burst=1))
    try:
        answers = [PortOneGateway(client).charge(request(f"m-open-{n}")) for n in range(3)]
    finally:
        client.close()
    assert [a.outcome for a in answers] == [Outcome.APPROVED] * 3
    assert sum("rate_limit_unavailable" in r.getMessage() for r in caplog.records) == 1


def test_the_setting_is_checked_at_start(redis_url: str) -> None:
    env = {"BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": "http://127.0.0.1:9"}
    for wrong in ("0", "-5", "fast"):
        with pytest.raises(ConfigError, match="BILLING_PORTONE_MAX_RPS"):
            load_settings({**env, "BILLING_PORTONE_MAX_RPS": wrong})
    memory = load_settings({**env, "BILLING_PORTONE_MAX_RPS": "100"})
    with pytest.raises(ConfigError, match="needs a redis:// BILLING_BROKER_URL"):
        make_gateway(memory, connections=1)
    shared = load_settings(
        {**env, "BILLING_PORTONE_MAX_RPS": "100", "BILLING_BROKER_URL": redis_url}
    )
    limit = rate_limit(shared)
    assert isinstance(limit, RedisBucket) and limit.rate == 100


def test_a_command_that_cannot_use_its_ceiling_exits_with_one_line() -> None:
    env = {**os.environ, "BILLING_SANDBOX": "1", "BILLING_PORTONE_URL": "http://127.0.0.1:9"}
    env["BILLING_PORTONE_MAX_RPS"] = "fast"
    command = [sys.executable, "-m", "billing", "customers", "register", "c1"]
    command += ["--card-number", "4111111111111111", "--expiry", "2031-11", "--birth", "871231"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "BILLING_PORTONE_MAX_RPS" in line


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 1.0),
        ("", 1.0),
        ("3", 3.0),
        ("600", 60.0),
        ("soon", 1.0),
        ("Wed, 21 Oct 2015 07:28:05 GMT", 5.0),
    ],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    assert retry_after(header, now=1445412480.0) == seconds
