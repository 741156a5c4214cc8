"""Every page of the console over real HTTP: what it shows an operator, and what it answers
to everyone else (no credentials, a console that is off, an unknown path)."""

from __future__ import annotations

import html
import re
import signal
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from billing.db.tables import Charge, Customer, Event
from billing.portone.client import PortOneClient
from billing.services.billing_keys import parse_card, register_key
from billing.services.charge_days import charges_per_day
from billing.services.refunds import request_refund
from billing.services.subscriptions import create_subscription
from tests.integration.ops.conftest import PASSWORD, USER, Ops, refused_start, served
from tests.integration.test_web import start_serve

PAGES = ["/", "/queues", "/search?q=cust-1", "/subscriptions/1", "/charges/1/receipt"]
POSTS = [
    "/subscriptions/1/retry",
    "/subscriptions/1/cancel",
    "/subscriptions/1/pause",
    "/subscriptions/1/resume",
    "/charges/1/refund",
    "/notices/1/resend",
]


def text_of(answer: httpx.Response) -> str:
    """The page as a person reads it: no tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", answer.text)).split())


def entries(answer: httpx.Response) -> list[str]:
    """The ids of the timeline's entries, top to bottom (event-12, charge-3, ...)."""
    return re.findall(r'<li class="entry [a-z]+" id="([a-z]+-[0-9]+)"', answer.text)


# -- who gets in ---------------------------------------------------------------------------------


def test_without_the_right_credentials_every_path_is_401_and_shows_nothing(ops: Ops) -> None:
    ops.paid("cust-1")
    strangers = [
        httpx.Client(timeout=10),
        httpx.Client(timeout=10, auth=(USER, "wrong")),
        httpx.Client(timeout=10, auth=("root", PASSWORD)),
    ]
    for client in strangers:
        for path in [*PAGES, "/static/ops.css", "/nowhere"]:
            answer = client.get(ops.console + path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith('Basic realm="billing')
            assert "cust-1" not in answer.text and "KRW" not in answer.text
        for path in POSTS:
            assert client.post(ops.console + path, data={"reason": "x"}).status_code == 401
        client.close()
    assert ops.get("/").status_code == 200


def test_the_console_is_off_without_ops_auth(ops: Ops) -> None:
    env = {k: v for k, v in ops.env.items() if k != "BILLING_OPS_AUTH"}
    with served(env) as url:
        for path in ["/ops", "/ops/", "/ops/queues", "/ops/subscriptions/1"]:
            answer = httpx.get(url + path, auth=(USER, PASSWORD), timeout=10)
            assert (answer.status_code, answer.text) == (404, "Not Found"), path
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("auth", ["oncall:", ":secret", "oncall"])
def test_billing_serve_refuses_ops_auth_without_a_user_or_a_password(ops: Ops, auth: str) -> None:
    assert refused_start({**ops.env, "BILLING_OPS_AUTH": auth}) == [
        "billing: error: BILLING_OPS_AUTH: must be user:password, both non-empty"
    ]


def test_billing_serve_serves_the_console_with_the_credentials_of_its_environment(
    ops: Ops,
) -> None:
    ops.paid("cust-served")
    process, url = start_serve(ops.env)
    try:
        assert httpx.get(url + "/ops/", timeout=10).status_code == 401
        page = httpx.get(
            url + "/ops/search?q=cust-served",
            auth=(USER, PASSWORD),
            timeout=10,
            follow_redirects=True,
        )
        assert page.status_code == 200
        assert "Subscription 1 active" in text_of(page)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_no_answer_of_the_console_is_cached_framed_or_sends_a_referrer(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-1")
    answers = [
        ops.get("/"),
        ops.get(f"/subscriptions/{sid}"),
        ops.get("/nowhere"),
        ops.post(f"/subscriptions/{sid}/pause", {"reason": "x"}, token=False),
        httpx.get(ops.console + "/", timeout=10),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 403, 401]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert "set-cookie" not in answer.headers


def test_unknown_paths_and_ids_are_404_pages(ops: Ops) -> None:
    for path, message in [
        ("/nowhere", "nothing at /ops/nowhere"),
        ("/subscriptions/999", "no subscription with id 999"),
        ("/subscriptions/99999999999999999999", "no subscription 99999999999999999999"),
        ("/charges/999/receipt", "no charge 999"),
    ]:
        answer = ops.get(path)
        assert answer.status_code == 404, path
        assert message in text_of(answer)


# -- overview ------------------------------------------------------------------------------------


def test_overview_shows_the_business_figures_of_metrics(ops: Ops) -> None:
    ops.paid("cust-1")
    ops.past_due("cust-2")
    ops.unknown("cust-3")
    page = ops.get("/")
    metrics = httpx.get(ops.url + "/metrics", timeout=10).text
    mrr = re.search(r"^billing_mrr_krw ([0-9.e+]+)$", metrics, re.M)
    assert mrr and int(float(mrr.group(1))) == 29700
    shown = text_of(page)
    assert "MRR 29,700 KRW" in shown
    assert "unknown charges 1" in shown
    assert "past due with a retry 1" in shown
    figure = re.search(r'id="subscriptions">(.*?)</table>', page.text, re.S)
    assert figure and "active 2 canceled 0 past_due 1 paused 0 trialing 0" in " ".join(
        html.unescape(re.sub(r"<[^>]+>", " ", figure.group(1))).split()
    )


def test_the_chart_has_60_days_counted_in_the_zone(ops: Ops) -> None:
    ops.paid("cust-1")  # 2027-01-31 00:30 in Seoul: still 2027-01-30 in UTC
    ops.past_due("cust-2")
    ops.unknown("cust-3")  # neither paid nor failed: not drawn
    ops.advance(timedelta(days=1))
    ops.charge_due()  # cust-2's dunning retry, approved this time
    page = ops.get("/")
    titles = re.findall(r"<title>([0-9-]{10}: [0-9]+ paid, [0-9]+ failed)</title>", page.text)
    assert len(titles) == 60
    assert titles[0].startswith("2026-12-04: ")
    assert titles[-2:] == ["2027-01-31: 1 paid, 1 failed", "2027-02-01: 1 paid, 0 failed"]
    assert len(re.findall(r'<rect class="paid"', page.text)) == 2
    assert len(re.findall(r'<rect class="failed"', page.text)) == 1


def test_charges_per_day_are_counted_by_the_database_on_day_boundaries(ops: Ops) -> None:
    ops.paid("cust-1")  # 2027-01-30 15:30 UTC, 2027-01-31 00:30 in Seoul
    now = ops.clock.now()
    with ops.app.transaction() as session:
        seoul = charges_per_day(session, now, ZoneInfo("Asia/Seoul"), days=3)
        utc = charges_per_day(session, now, ZoneInfo("UTC"), days=3)
    assert [(d.day, d.paid) for d in seoul] == [
        (date(2027, 1, 29), 0),
        (date(2027, 1, 30), 0),
        (date(2027, 1, 31), 1),
    ]
    assert [(d.day, d.paid) for d in utc] == [
        (date(2027, 1, 28), 0),
        (date(2027, 1, 29), 0),
        (date(2027, 1, 30), 1),
    ]


# -- queues --------------------------------------------------------------------------------------


def test_queues_show_what_needs_a_person(ops: Ops) -> None:
    paid_sid, paid = ops.paid("cust-paid")
    past = ops.past_due("cust-late")
    unknown_sid, unknown = ops.unknown("cust-lost")
    aside = ops.subscribe("cust-aside")
    ops.set_aside(aside, "KeyError: no 'gold' where one was expected")
    failing = ops.failing_notice(past, "HTTP 500 from https://merchant.example/hook")
    with ops.app.transaction() as session:
        refund = request_refund(
            session, paid.id, 1000, "goodwill", ops.clock.now(), datetime.now(UTC)
        )
        duplicate = Charge(
            **{
                c: getattr(paid, c)
                for c in (
                    "subscription_id",
                    "period_no",
                    "customer_uid",
                    "plan_id",
                    "plan_version",
                    "name",
                    "amount",
                    "period_start",
                    "period_end",
                    "created_at",
                    "updated_at",
                    "paid_at",
                )
            },
            attempt=2,
            merchant_uid=paid.merchant_uid[:-1] + "2",
            status="paid",
            imp_uid="imps_000000000002",
            duplicate_of=paid.id,
            sends=1,
            refunded_amount=0,
        )
        session.add(duplicate)
        session.flush()
        duplicate_id = duplicate.id
    page = ops.get("/queues")
    assert page.status_code == 200
    sections = {
        name: text_of(httpx.Response(200, text=body))
        for name, body in re.findall(r'<h2 id="([a-z-]+)">(.*?)(?=<h2 |</main>)', page.text, re.S)
    }
    assert sections["past-due"].startswith("Past due 1")
    assert (
        f"{past} cust-late monthly 2027-02-01 00:30:00+09:00 soft 잔액부족" in sections["past-due"]
    )
    assert sections["unknown"].startswith("Unknown charges: PortOne's answer not seen 1")
    assert f"{unknown.id} {unknown_sid} {unknown.merchant_uid} 9,900 KRW" in sections["unknown"]
    assert re.search(rf"{unknown.merchant_uid} 9,900 KRW [0-9]+ s 1 0", sections["unknown"])
    assert f"{refund.id} {paid.id} {paid_sid} 1,000 KRW pending goodwill" in sections["refunds"]
    assert (
        f"{failing.id} {past} payment_failed log 1 HTTP 500 from https://merchant.example/hook"
    ) in sections["notices"]
    assert f"{aside} KeyError: no 'gold' where one was expected" in sections["set-aside"]
    assert (
        f"{duplicate_id} {paid_sid} {paid.id} {paid.merchant_uid[:-1]}2 9,900 KRW 0 KRW"
        in sections["duplicates"]
    )


def test_empty_queues_say_so(ops: Ops) -> None:
    shown = text_of(ops.get("/queues"))
    for line in [
        "Past due 0 Nothing past due.",
        "No charge waits for PortOne's answer.",
        "No refund in progress.",
        "Nothing set aside.",
        "No period was paid twice.",
    ]:
        assert line in shown


# -- search --------------------------------------------------------------------------------------


def test_search_finds_a_subscription_by_each_identifier(ops: Ops) -> None:
    sid, charge = ops.paid("cust-1")
    assert charge.imp_uid
    for wanted in ["cust-1", str(sid), charge.merchant_uid, charge.imp_uid, f"  {charge.imp_uid} "]:
        answer = ops.get("/search", params={"q": wanted}, follow_redirects=False)
        assert answer.status_code == 303, wanted
        assert answer.headers["location"] == f"/ops/subscriptions/{sid}"


def test_search_lists_every_match(ops: Ops) -> None:
    first = ops.subscribe("2")  # a customer_uid that is also a subscription id
    now = ops.clock.now()
    with ops.app.transaction() as session:
        second = create_subscription(session, "2", "monthly", now, now).id
    answer = ops.get("/search", params={"q": "2"})
    assert answer.status_code == 200
    rows = re.findall(r"<tr><td><a href=\"/ops/subscriptions/([0-9]+)\">", answer.text)
    assert sorted(map(int, rows)) == [first, second]
    assert "subscription id" in text_of(answer) and "customer_uid" in text_of(answer)


def test_search_says_when_nothing_matches(ops: Ops) -> None:
    ops.paid("cust-1")
    nothing = ops.get("/search", params={"q": "imp_999"})
    assert nothing.status_code == 404
    assert "Nothing has the customer_uid, subscription id, merchant_uid or imp_uid “imp_999”" in (
        text_of(nothing)
    )
    assert ops.get("/search", params={"q": "   "}).status_code == 200
    too_long = ops.get("/search", params={"q": "x" * 101})
    assert too_long.status_code == 400
    assert "search: at most 100 characters" in text_of(too_long)
    hostile = ops.get("/search", params={"q": "<script>alert(1)</script>"})
    assert "<script>alert" not in hostile.text and "&lt;script&gt;" in hostile.text


# -- a subscription ------------------------------------------------------------------------------


def test_subscription_page_shows_status_plan_next_charge_and_customer(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-1")
    shown = text_of(ops.get(f"/subscriptions/{sid}"))
    assert f"Subscription {sid} active" in shown
    assert "customer cust-1 · 홍길동 · cust-1@example.com" in shown
    assert "plan 월간 ( monthly v1): 9,900 KRW, every 1 month, Asia/Seoul" in shown
    assert "next charge 2027-02-28 00:30:00+09:00 (period 2, attempt 1)" in shown
    assert "paid period 2027-01-31 00:30:00+09:00 to 2027-02-28 00:30:00+09:00" in shown


def test_the_timeline_is_newest_first_with_portone_answers_refunds_and_notices(ops: Ops) -> None:
    sid = ops.past_due("cust-1")
    ops.advance(timedelta(days=1))
    ops.charge_due()  # the dunning retry, approved
    charges = ops.charges(sid)
    with ops.app.transaction() as session:
        request_refund(
            session, charges[1].id, 500, "late fee waived", ops.clock.now(), datetime.now(UTC)
        )
    page = ops.get(f"/subscriptions/{sid}")
    order = entries(page)
    assert order.index("refund-1") < order.index(f"charge-{charges[1].id}")
    assert order.index(f"charge-{charges[1].id}") < order.index(f"charge-{charges[0].id}")
    event_ids = [int(e.split("-")[1]) for e in order if e.startswith("event-")]
    assert event_ids == sorted(event_ids, reverse=True)
    assert order[-1] == f"event-{min(event_ids)}"  # subscription_created, at the bottom
    shown = text_of(page)
    assert (f"charge {charges[0].id} failed 9,900 KRW, period 1 attempt 1") in shown
    assert "PortOne declined (HTTP 200, code 0): 잔액부족" in shown
    assert "failed 잔액부족 (soft)" in shown
    assert f"charge {charges[1].id} paid 9,900 KRW, period 1 attempt 2" in shown
    assert "PortOne approved (HTTP 200, code 0)" in shown
    assert f"refund 1 pending 500 KRW of charge {charges[1].id} reason late fee waived" in shown
    assert re.search(
        r"notice [0-9]+ payment_failed by log delivered|notice [0-9]+ "
        r"payment_failed by log pending",
        shown,
    )
    assert f'href="/ops/charges/{charges[1].id}/receipt"' in page.text
    assert f'href="/ops/charges/{charges[0].id}/receipt"' not in page.text  # failed: none


def test_timeline_times_are_in_the_plans_zone(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-ny", plan="nightly-ny")
    shown = text_of(ops.get(f"/subscriptions/{sid}"))
    assert "newest first, in America/New_York" in shown
    assert "2027-01-30 10:30:00-05:00 charge" in shown  # 2027-01-30 15:30 UTC
    assert "next_charge_at 2027-01-30 10:30:00-05:00" in shown  # inside an event's data
    assert "next charge 2027-01-31 10:30:00-05:00" in shown


def unknown_event(sid: int, kind: str, now: datetime, data: dict[str, object]) -> Event:
    return Event(subscription_id=sid, kind=kind, data=data, occurred_at=now, recorded_at=now)


def test_older_events_than_the_page_holds_are_counted(ops: Ops) -> None:
    sid = ops.subscribe("cust-busy")
    with ops.app.transaction() as session:
        for n in range(1005):  # a kind this version does not write (an older or newer one)
            session.add(unknown_event(sid, "noise", ops.clock.now(), {"n": n}))
    page = ops.get(f"/subscriptions/{sid}")
    assert len([e for e in entries(page) if e.startswith("event-")]) == 1000
    assert f"6 older events are not shown: billing subscriptions events {sid}" in text_of(page)


def test_no_page_shows_a_card_number_or_a_secret(ops: Ops) -> None:
    with ops.app.transaction() as session:
        session.add(Customer(customer_uid="cust-card", created_at=ops.clock.now()))
    client = PortOneClient(ops.sandbox.url, "sandbox_key", "sandbox_secret")
    try:
        card = parse_card("4111-1111-1111-1111", "2031-11", "871231", "12", date(2027, 1, 1))
        register_key(ops.app, client, "cust-card", card, None)
    finally:
        client.close()
    now = ops.clock.now()
    with ops.app.transaction() as session:
        sid = create_subscription(session, "cust-card", "monthly", now, now).id
        note = {"note": "card 4111 1111 1111 1111 key bk_abcdefghijklmnop"}
        session.add(unknown_event(sid, "careless", now, note))
    ops.charge_due()
    pages = [
        ops.get(f"/subscriptions/{sid}"),
        ops.get("/"),
        ops.get("/queues"),
        ops.get("/search", params={"q": "cust-card"}, follow_redirects=True),
    ]
    assert "ending 1111" in text_of(pages[0])
    for page in pages:
        digits = re.sub(r"[^0-9]", "", page.text)
        assert "4111111111111111" not in digits and "411111" not in page.text
        for secret in ("sandbox_secret", PASSWORD, "871231", "bk_abcdefghijklmnop"):
            assert secret not in page.text


# -- the receipt ---------------------------------------------------------------------------------


def test_the_receipt_link_leads_to_portones_receipt(ops: Ops) -> None:
    sid, charge = ops.paid("cust-1")
    answer = ops.get(f"/charges/{charge.id}/receipt", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"https://receipt.sandbox.invalid/{charge.imp_uid}"
    past = ops.past_due("cust-2")
    failed = ops.charges(past)[0]
    refused = ops.get(f"/charges/{failed.id}/receipt")
    assert refused.status_code == 404
    assert f"charge {failed.id} was never paid at PortOne: it has no receipt" in text_of(refused)
    with ops.app.transaction() as session:
        row = session.scalar(select(Charge).where(Charge.id == charge.id))
        assert row is not None
        row.imp_uid = "imps_unknown_to_portone"
    missing = ops.get(f"/charges/{charge.id}/receipt")
    assert missing.status_code == 502
    assert "PortOne did not show payment imps_unknown_to_portone" in text_of(missing)
    assert sid


def test_the_console_links_to_flowers_workers_and_task_lists(ops: Ops) -> None:
    sid, _charge = ops.paid("cust-flower")
    env = {**ops.env, "BILLING_FLOWER_URL": "https://ops.merchant.example/flower/"}
    with served(env) as url:

        def get(path: str) -> str:
            return httpx.get(url + path, auth=(USER, PASSWORD), timeout=10).text

        overview, queues, page = get("/ops/"), get("/ops/queues"), get(f"/ops/subscriptions/{sid}")
    flower = "https://ops.merchant.example/flower"
    assert f'href="{flower}/workers"' in overview and f'href="{flower}/tasks"' in overview
    assert f'href="{flower}/tasks?name=billing.charge"' in page
    assert f'href="{flower}/tasks?name=billing.reconcile"' in page
    assert 'id="flower-workers"' in queues
    # without BILLING_FLOWER_URL the console names no Flower
    assert "flower" not in ops.get(f"/ops/subscriptions/{sid}").text.lower()


@pytest.mark.parametrize("url", ["flower.example", "javascript:alert(1)", "https://f/?a=b"])
def test_billing_serve_refuses_a_flower_url_it_cannot_link_to(ops: Ops, url: str) -> None:
    [line] = refused_start({**ops.env, "BILLING_FLOWER_URL": url})
    assert line.startswith("billing: error: BILLING_FLOWER_URL: expected")
