"""End to end on real things: PostgreSQL, Redis, a `celery -A workers worker` process, and
the bundled PortOne sandbox over HTTP. The sandbox's ledger is the judge of money moved."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

from tests.integration.conftest import START, Product
from tests.processes import ROOT, WorkerProcess, product_env, wait_for


def test_approved(product: Product) -> None:
    sid = product.subscribe("cust-ok")
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert (charge.status, charge.imp_uid) == ("paid", payment["imp_uid"])
    assert payment["merchant_uid"] == charge.merchant_uid and payment["amount"] == 9900
    assert payment["customer_uid"] == "cust-ok"
    assert product.subscription(sid).next_charge_at == START + timedelta(days=28)
    assert product.anomalies() == []


def test_declined_then_retried_on_schedule(product: Product) -> None:
    sid = product.subscribe("cust-poor")
    product.sandbox.script(customer_uid="cust-poor", behaviors=["decline:잔액부족"])
    product.settle()
    [charge] = product.charges()
    assert (charge.status, charge.fail_reason) == ("failed", "잔액부족")
    sub = product.subscription(sid)
    assert sub.status == "past_due" and sub.next_charge_at == START + timedelta(days=1)
    product.clock.advance(timedelta(days=1))
    product.settle()
    assert [c.status for c in product.charges()] == ["failed", "paid"]
    assert product.subscription(sid).status == "active"
    assert product.anomalies() == []


def test_refused_unknown_customer_moves_no_money(product: Product) -> None:
    product.subscribe("cust-gone")
    product.sandbox.script(customer_uid="cust-gone", behaviors=["unknown_customer"])
    product.settle()
    [charge] = product.charges()
    assert charge.status == "failed" and charge.fail_reason
    assert product.paid_at_sandbox() == []


def test_commit_then_timeout_is_paid_exactly_once(product: Product) -> None:
    product.subscribe("cust-slow")
    product.sandbox.script(customer_uid="cust-slow", behaviors=["commit_then_timeout"])
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert charge.status == "paid" and charge.imp_uid == payment["imp_uid"]
    assert charge.sends == 1  # found by lookup, never sent twice
    assert product.anomalies() == []


def test_commit_then_reset_is_paid_exactly_once(product: Product) -> None:
    product.subscribe("cust-reset")
    product.sandbox.script(customer_uid="cust-reset", behaviors=["commit_then_reset"])
    product.settle()
    [charge] = product.charges()
    assert charge.status == "paid" and len(product.paid_at_sandbox()) == 1


def test_5xx_before_processing_is_sent_again_with_the_same_merchant_uid(product: Product) -> None:
    product.subscribe("cust-5xx")
    product.sandbox.script(customer_uid="cust-5xx", behaviors=["error_500"])
    product.settle()
    [charge] = product.charges()
    [payment] = product.paid_at_sandbox()
    assert charge.status == "paid" and charge.sends == 2
    assert payment["merchant_uid"] == charge.merchant_uid


def test_token_expiry_mid_run(product: Product) -> None:
    for n in range(5):
        product.subscribe(f"cust-t{n}")
    product.sandbox.script(customer_uid="cust-t2", behaviors=["token_expired"])
    product.settle()
    product.sandbox.expire_tokens()
    product.clock.advance(timedelta(days=28))
    product.settle()
    assert [c.status for c in product.charges()] == ["paid"] * 10
    # one token at start, a new one after cust-t2's 401, another after every token expired
    assert product.sandbox.stats()["requests"]["POST /users/getToken"] == 3
    assert product.anomalies() == []


def test_two_scheduler_processes_racing_on_the_same_due_rows(product: Product) -> None:
    for n in range(200):
        product.subscribe(f"cust-r{n:03d}")
    command = [sys.executable, "-m", "billing", "scheduler", "--once"]
    racers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=product_env(product.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    claimed = [int(out.decode().split()[1].rstrip(",")) for out, _ in outputs]
    assert sum(claimed) == 200
    product.settle()
    charges = product.charges()
    assert len(charges) == 200 and len({c.subscription_id for c in charges}) == 200
    assert len(product.paid_at_sandbox()) == 200
    assert product.anomalies() == []


def test_worker_killed_mid_charge_then_restarted(product: Product, tmp_path: Path) -> None:
    product.subscribe("cust-kill")
    product.sandbox.set_latency(ms=1500)
    product.scheduler.run_pass()
    wait_for(
        lambda: [c.status for c in product.charges()] == ["processing"],
        20,
        "the charge to be in flight",
    )
    product.worker.kill()
    time.sleep(2)  # the sandbox finishes the request its client abandoned
    product.sandbox.set_latency(ms=0)
    product.worker = WorkerProcess(product.env, tmp_path / "worker2.log").start()
    product.settle()
    [charge] = product.charges()
    assert charge.status == "paid"
    assert len(product.paid_at_sandbox()) == 1  # no double charge
    assert product.anomalies() == []


def test_catch_up_after_the_scheduler_was_down_for_months(product: Product) -> None:
    sid = product.subscribe("cust-late")
    product.clock.advance(timedelta(days=95))
    product.settle()
    charges = product.charges()
    assert [c.period_no for c in charges] == [1, 2, 3, 4]
    assert [c.period_start.astimezone(UTC).date().isoformat() for c in charges] == [
        "2027-01-30",
        "2027-02-27",
        "2027-03-30",
        "2027-04-29",
    ]
    assert len(product.paid_at_sandbox()) == 4
    assert product.subscription(sid).period_no == 5
    assert product.anomalies() == []


def test_many_charges_with_faults_keep_every_invariant(product: Product) -> None:
    for n in range(60):
        product.subscribe(f"cust-f{n:02d}", START + timedelta(hours=n))
    product.sandbox.set_faults(
        {"error_500": 0.1, "commit_then_timeout": 0.1, "commit_then_reset": 0.05, "decline": 0.1},
        seed=3,
    )
    product.clock.advance(timedelta(days=3))
    product.settle(timeout=120)
    product.sandbox.set_faults({}, seed=None)
    product.settle(timeout=60)
    assert product.anomalies() == []
    assert len(product.charges()) >= 60


def test_worker_logs_carry_no_token_secret_or_card_data(product: Product, tmp_path: Path) -> None:
    import httpx

    product.subscribe("cust-log")
    product.sandbox.script(customer_uid="cust-log", behaviors=["token_expired", "error_500"])
    product.settle()
    assert [c.status for c in product.charges()] == ["paid"]
    token = httpx.post(
        f"{product.sandbox.url}/users/getToken",
        json={"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"},
    ).json()["response"]["access_token"]
    log = product.worker.log.read_text()
    assert "charge_answer" in log  # the worker did log the exchange
    assert token not in log
    assert "sandbox_secret" not in log
    assert "411111" not in log  # the sandbox's test card
