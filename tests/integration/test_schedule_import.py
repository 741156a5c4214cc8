"""``billing import portone-schedules`` (SPEC 10) against the sandbox's hosted scheduler over
HTTP, on real PostgreSQL with a real worker: every period is charged exactly once, by
PortOne or by us, also when the import is SIGKILLed between its steps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from billing import invariants
from billing.db.tables import Event, ScheduleTakeover, Subscription
from billing.portone.client import PortOneClient
from billing.sandbox import SandboxServer
from billing.services.schedule_import import RUN_LOCK
from tests.acceptance.test_cli import js, refused
from tests.conftest import CliRunner, snapshot
from tests.integration.conftest import Product
from tests.processes import wait_for

SEOUL = ZoneInfo("Asia/Seoul")
FEB, MAR, APR, MAY = (datetime(2027, month, 1, tzinfo=SEOUL) for month in (2, 3, 4, 5))
CARD = {"card_number": "4111-1111-1111-1111", "expiry": "2099-12", "birth": "900101"}


@pytest.fixture
def portone(sandbox: SandboxServer) -> Iterator[PortOneClient]:
    client = PortOneClient(sandbox.url, "sandbox_key", "sandbox_secret")
    yield client
    client.close()


def ok_call(client: PortOneClient, method: str, path: str, **options: Any) -> Any:
    exchange = client.call(method, path, **options)
    document = json.loads(exchange.body)
    assert exchange.status == 200 and document["code"] == 0, document
    return document["response"]


def hosted(client: PortOneClient, uid: str, *moments: datetime, amount: int = 9900) -> None:
    """The customer's billing key and PortOne-hosted schedules, as a merchant made them."""
    ok_call(client, "POST", f"/subscribe/customers/{uid}", json=CARD)
    schedules = [
        {
            "merchant_uid": f"{uid}-{m:%m}",
            "schedule_at": int(m.timestamp()),
            "amount": amount,
            "name": "월간",
            "currency": "KRW",
        }
        for m in moments
    ]
    ok_call(
        client,
        "POST",
        "/subscribe/payments/schedule",
        json={"customer_uid": uid, "schedules": schedules},
    )


def at_portone(client: PortOneClient, uid: str) -> dict[str, str]:
    listing = ok_call(
        client,
        "GET",
        f"/subscribe/payments/schedule/customers/{uid}",
        params={"from": int(FEB.timestamp()) - 86400, "to": int(MAY.timestamp())},
    )
    items = listing if isinstance(listing, list) else listing["list"]
    return {item["merchant_uid"]: item["schedule_status"] for item in items}


def move_sandbox_clock(sandbox: SandboxServer, moment: datetime) -> None:
    response = httpx.post(f"{sandbox.url}/__sandbox__/clock", json={"now": moment.timestamp()})
    assert response.status_code == 200, response.text


def customers_file(tmp_path: Path, *rows: tuple[str, str]) -> str:
    path = tmp_path / "customers.csv"
    path.write_text("customer_uid,plan_id\n" + "".join(f"{u},{p}\n" for u, p in rows))
    return str(path)


def paid_for(product: Product, uid: str) -> list[str]:
    return sorted(
        str(p["merchant_uid"]) for p in product.paid_at_sandbox() if p["customer_uid"] == uid
    )


def anomalies(product: Product) -> list[invariants.Anomaly]:
    """The invariants over our own payments (the ones PortOne's scheduler made are PortOne's
    merchant_uids, never recorded here)."""
    ours = [p for p in product.sandbox.ledger() if str(p["merchant_uid"]).startswith("sub-")]
    with product.app.transaction() as session:
        return invariants.check(session, ours, product.clock.now())


def bill_until(product: Product, moment: datetime) -> None:
    product.clock.set(moment)
    product.settle()


def test_a_customer_is_taken_over_and_each_period_is_charged_once(
    product: Product, portone: PortOneClient, tmp_path: Path
) -> None:
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "c1", FEB, MAR, APR)
    result = js(
        cli(
            "import",
            "portone-schedules",
            "--customers",
            customers_file(tmp_path, ("c1", "monthly")),
            "--json",
        )
    )
    [outcome] = result["customers"]
    assert outcome["result"] == "taken_over" and result["taken_over"] == 1
    assert outcome["revoked"] == ["c1-02", "c1-03", "c1-04"]
    assert datetime.fromisoformat(outcome["first_charge_at"]) == FEB
    assert at_portone(portone, "c1") == {"c1-02": "revoked", "c1-03": "revoked", "c1-04": "revoked"}
    move_sandbox_clock(product.sandbox, APR.replace(hour=1))  # PortOne would have fired all three
    bill_until(product, APR.replace(hour=1))
    charged = paid_for(product, "c1")
    assert len(charged) == 3 and all(uid.startswith("sub-") for uid in charged)  # all ours
    sub = product.subscription(outcome["subscription_id"])
    assert sub.next_charge_at == MAY and sub.status == "active"
    assert anomalies(product) == []
    again = js(
        cli(
            "import",
            "portone-schedules",
            "--customers",
            customers_file(tmp_path, ("c1", "monthly")),
            "--json",
        )
    )
    assert again["customers"][0]["result"] == "already"  # a re-run changes nothing
    assert len(paid_for(product, "c1")) == 3


@pytest.mark.parametrize("step", ["held", "unscheduled"])
def test_killed_between_the_steps_no_period_is_charged_twice_or_dropped(
    product: Product, portone: PortOneClient, tmp_path: Path, step: str
) -> None:
    """SIGKILL after the held subscription is committed (PortOne still charges), or after
    the unschedule (nobody charges); a February that falls due meanwhile is charged once,
    by PortOne in the first case and by us in the second; the re-run finishes the job."""
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "c2", FEB, MAR, APR)
    file = customers_file(tmp_path, ("c2", "monthly"))
    killed = cli(
        "import", "portone-schedules", "--customers", file, env={"BILLING_IMPORT_KILL_AFTER": step}
    )
    assert killed.code == -9, killed.err
    with product.app.transaction() as session:
        [takeover] = session.scalars(select(ScheduleTakeover)).all()
        held = session.get(Subscription, takeover.subscription_id)
        assert takeover.state == "held" and held is not None and held.next_charge_at is None
    assert js(cli("status", "--json"))["takeovers_held"] == 1  # a person sees it
    sid = str(takeover.subscription_id)  # a pause (then a resume) would charge it at once:
    refused(cli("subscriptions", "pause", sid), "held", "import portone-schedules")
    waiting = "scheduled" if step == "held" else "revoked"
    assert set(at_portone(portone, "c2").values()) == {waiting}
    move_sandbox_clock(product.sandbox, FEB.replace(hour=1))  # February falls due meanwhile
    bill_until(product, FEB.replace(hour=1))  # the held subscription is not charged here
    fired_at_portone = ["c2-02"] if step == "held" else []
    wait_for(lambda: paid_for(product, "c2") == fired_at_portone, 10, "PortOne's schedule")
    result = js(cli("import", "portone-schedules", "--customers", file, "--json"))
    [outcome] = result["customers"]
    assert outcome["result"] == "taken_over"
    assert outcome["fired"] == fired_at_portone
    assert datetime.fromisoformat(outcome["first_charge_at"]) == (MAR if step == "held" else FEB)
    move_sandbox_clock(product.sandbox, APR.replace(hour=1))
    bill_until(product, APR.replace(hour=1))
    charged = paid_for(product, "c2")
    assert len(charged) == 3, charged  # February, March, April: once each
    assert js(cli("status", "--json"))["takeovers_held"] == 0
    assert product.subscription(outcome["subscription_id"]).next_charge_at == MAY
    assert anomalies(product) == []


def test_what_cannot_be_taken_over_is_refused_and_changes_nothing(
    product: Product, portone: PortOneClient, tmp_path: Path, db_url: str
) -> None:
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "other-price", FEB, amount=12000)
    ok_call(portone, "POST", "/subscribe/customers/nothing-waiting", json=CARD)
    product.subscribe("billed-here")
    hosted(portone, "billed-here", FEB)
    before = snapshot(db_url)
    file = customers_file(
        tmp_path,
        ("other-price", "monthly"),
        ("nothing-waiting", "monthly"),
        ("billed-here", "monthly"),
    )
    result = cli("import", "portone-schedules", "--customers", file, "--json")
    assert result.code == 1
    outcomes = {o["customer_uid"]: o for o in json.loads(result.out)["customers"]}
    assert {o["result"] for o in outcomes.values()} == {"refused"}
    assert "12000 KRW" in outcomes["other-price"]["detail"]
    assert "no waiting schedule" in outcomes["nothing-waiting"]["detail"]
    assert "charge twice" in outcomes["billed-here"]["detail"]
    assert snapshot(db_url) == before
    assert at_portone(portone, "other-price") == {"other-price-02": "scheduled"}
    assert at_portone(portone, "billed-here") == {"billed-here-02": "scheduled"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("customer_uid,plan_id\nc1,no-such-plan\n", "line 2: unknown plan 'no-such-plan'"),
        ("uid,plan\nc1,monthly\n", "line 1: the header must be customer_uid,plan_id"),
        ("customer_uid,plan_id\nc1,monthly\nc1,monthly\n", "line 3: customer_uid c1 twice"),
        ("customer_uid,plan_id\nbad uid!,monthly\n", "line 2: customer_uid"),
        ('{"customer_uid": "c1"}\n', "line 1: not a JSON object with exactly"),
        ("customer_uid,plan_id\n", "no customers in the file"),
    ],
)
def test_a_bad_customers_file_is_one_line_and_changes_nothing(
    product: Product, tmp_path: Path, db_url: str, content: str, expected: str
) -> None:
    cli = CliRunner(product.env, tmp_path)
    (tmp_path / "bad.csv").write_text(content)
    before = snapshot(db_url)
    refused(cli("import", "portone-schedules", "--customers", "bad.csv"), expected)
    refused(cli("import", "portone-schedules", "--customers", "missing.csv"), "cannot read")
    refused(cli("import", "portone-schedules"), "--customers")
    assert snapshot(db_url) == before


def test_portone_down_leaves_the_customer_held_or_untouched_and_a_rerun_finishes(
    product: Product, portone: PortOneClient, tmp_path: Path
) -> None:
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "c3", FEB, MAR)
    file = customers_file(tmp_path, ("c3", "monthly"))
    down = {"BILLING_PORTONE_URL": "http://127.0.0.1:9"}  # nothing listens there
    result = cli("import", "portone-schedules", "--customers", file, "--json", env=down)
    assert result.code == 1
    [outcome] = json.loads(result.out)["customers"]
    assert outcome["result"] == "refused" and "did not answer" in outcome["detail"]
    with product.app.transaction() as session:
        assert session.scalars(select(ScheduleTakeover)).all() == []
    [outcome] = js(cli("import", "portone-schedules", "--customers", file, "--json"))["customers"]
    assert outcome["result"] == "taken_over"


def test_two_imports_at_once_the_second_is_refused(
    product: Product, portone: PortOneClient, tmp_path: Path, db_url: str
) -> None:
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "c4", FEB)
    engine = create_engine(db_url)
    with engine.connect() as connection, connection.begin():  # what a first run holds
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RUN_LOCK})
        file = customers_file(tmp_path, ("c4", "monthly"))
        refused(cli("import", "portone-schedules", "--customers", file), "another")
    engine.dispose()
    assert at_portone(portone, "c4") == {"c4-02": "scheduled"}


def test_the_takeover_is_in_the_subscription_history(
    product: Product, portone: PortOneClient, tmp_path: Path
) -> None:
    cli = CliRunner(product.env, tmp_path)
    hosted(portone, "c5", FEB, MAR)
    [outcome] = js(
        cli(
            "import",
            "portone-schedules",
            "--customers",
            customers_file(tmp_path, ("c5", "monthly")),
            "--json",
        )
    )["customers"]
    with product.app.transaction() as session:
        kinds = session.scalars(
            select(Event.kind).where(Event.subscription_id == outcome["subscription_id"])
        ).all()
    assert kinds == ["subscription_created", "schedules_taken_over"]
    shown = cli("subscriptions", "events", str(outcome["subscription_id"]))
    assert "schedules_taken_over" in shown.out
