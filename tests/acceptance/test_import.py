"""`billing subscriptions import`: CSV or JSON lines, all or nothing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from billing.app import App
from billing.db.tables import Subscription
from billing.errors import InvalidInput
from billing.services import imports
from billing.services.imports import CHUNK
from billing.services.plan_store import ensure_catalog
from tests.acceptance.test_cli import js, ok, refused
from tests.conftest import NOW, CliRunner, snapshot


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


def test_a_csv_creates_customers_and_subscriptions(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli("customers", "add", "known", "--email", "known@example.com"))
    name = write(
        tmp_path,
        "subs.csv",
        (
            "customer_uid,plan_id,start,name,email,phone\n"
            "known,basic-monthly,2027-01-31T00:30:00+09:00,,,\n"
            "new-1,premium-yearly,2027-02-01,홍길동,hong@example.com,010-1234-5678\n"
            "new-1,basic-monthly,,,,\n"
        ),
    )
    result = js(cli("subscriptions", "import", name, "--json"))
    assert (result["subscriptions"], result["new_customers"]) == (3, 1)
    subs = js(cli("subscriptions", "list", "--json"))
    assert [(s["customer_uid"], s["plan_id"]) for s in subs] == [
        ("known", "basic-monthly"),
        ("new-1", "premium-yearly"),
        ("new-1", "basic-monthly"),
    ]
    assert subs[0]["next_charge_at"] == "2027-01-31T00:30:00+09:00"
    assert (
        subs[1]["next_charge_at"] == "2027-02-01T00:00:00+09:00"
    )  # a date: midnight in the plan's zone
    events = js(cli("subscriptions", "events", str(subs[0]["id"]), "--json"))
    assert [e["kind"] for e in events] == ["subscription_created"]


def test_json_lines_work_the_same(cli: CliRunner, tmp_path: Path) -> None:
    lines = [
        {"customer_uid": f"j{n}", "plan_id": "basic-monthly", "start": "2027-03-31T10:00:00+09:00"}
        for n in range(50)
    ]
    name = write(tmp_path, "subs.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    assert "imported 50 subscriptions (50 new customers)" in ok(
        cli("subscriptions", "import", name)
    )
    preview = {s["next_charge_at"] for s in js(cli("subscriptions", "list", "--json"))}
    assert preview == {"2027-03-31T10:00:00+09:00"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer_uid,plan_id\nc1,basic-monthly\nc2,gold\n", "line 3: unknown plan 'gold'"),
        ("customer_uid,plan_id,start\nc1,basic-monthly,someday\n", "line 2: start:"),
        ("customer_uid,plan_id\nhas space,basic-monthly\n", "line 2: customer_uid 'has space'"),
        ("customer_uid,plan_id,email\nc1,basic-monthly,nope\n", "line 2: email 'nope'"),
        ("customer,plan\nc1,basic-monthly\n", "line 1: the header needs customer_uid, plan_id"),
        ("customer_uid,plan_id\nc1,basic-monthly,extra\n", "line 2: more fields than the header"),
        ("customer_uid,plan_id\n", "no rows to import"),
        (
            '{"customer_uid": "c1", "plan_id": "basic-monthly", "colour": "red"}\n',
            "line 1: unknown field 'colour'",
        ),
        (
            '{"customer_uid": "c1", "plan_id": "basic-monthly"}\n[1, 2]\n',
            "line 2: not a JSON object",
        ),
        ('{"customer_uid": 7, "plan_id": "basic-monthly"}\n', "line 1: customer_uid must be text"),
    ],
)
def test_a_bad_file_imports_nothing(
    cli: CliRunner, db_url: str, tmp_path: Path, text: str, expected: str
) -> None:
    ok(cli("plans", "list"))  # the catalog is loaded before the snapshot
    name = write(tmp_path, "bad.csv" if not text.startswith("{") else "bad.jsonl", text)
    before = snapshot(db_url)
    refused(cli("subscriptions", "import", name), expected)
    assert snapshot(db_url) == before


def test_a_missing_file_is_one_line(cli: CliRunner) -> None:
    refused(cli("subscriptions", "import", "nowhere.csv"), "nowhere.csv: cannot read")


def test_a_file_is_read_as_a_stream_even_from_a_pipe(cli: CliRunner) -> None:
    text = "\n\n" + "".join(
        json.dumps({"customer_uid": f"p{n}", "plan_id": "basic-monthly"}) + "\n" for n in range(3)
    )
    assert "imported 3 subscriptions" in ok(
        cli("subscriptions", "import", "/dev/stdin", stdin=text)
    )
    assert len(js(cli("subscriptions", "list", "--json"))) == 3


def test_byte_order_mark_crlf_and_unicode_line_separators_are_text(
    cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "bom.csv").write_bytes(
        '\ufeffcustomer_uid,plan_id,name\r\nb1,basic-monthly,"두 줄\r\n이름"\r\n'.encode()
    )
    assert "imported 1 subscriptions" in ok(cli("subscriptions", "import", "bom.csv"))
    record = {"customer_uid": "u1", "plan_id": "basic-monthly", "name": "a\u2028b\x85c"}
    write(tmp_path, "sep.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
    assert "imported 1 subscriptions" in ok(cli("subscriptions", "import", "sep.jsonl"))


def test_a_file_that_is_not_utf8_half_way_imports_nothing(
    cli: CliRunner, db_url: str, tmp_path: Path
) -> None:
    ok(cli("plans", "list"))
    good = "".join(f"c{n},basic-monthly\n" for n in range(3000)).encode()
    (tmp_path / "latin.csv").write_bytes(
        b"customer_uid,plan_id\n" + good + b"caf\xe9,basic-monthly\n"
    )
    before = snapshot(db_url)
    refused(cli("subscriptions", "import", "latin.csv"), "latin.csv: cannot read: not UTF-8 text")
    assert snapshot(db_url) == before


DUP_CUSTOMER = text(
    "SELECT name, email, (SELECT count(*) FROM subscriptions s WHERE s.customer_id = c.id)"
    " FROM customers c WHERE customer_uid = 'dup'"
)


def test_chunks_share_customers_and_a_late_bad_row_imports_nothing(
    cli: CliRunner, db_url: str, tmp_path: Path
) -> None:
    """More rows than one chunk: a customer_uid seen in two chunks is one customer, with the
    details of its first row; a bad row after several chunks still leaves nothing behind."""
    ok(cli("plans", "list"))
    rows = [f"c{n},basic-monthly,," for n in range(CHUNK + 10)]
    rows[0] = "dup,basic-monthly,First,"
    rows[CHUNK + 5] = "dup,premium-yearly,Second,second@example.com"
    header = "customer_uid,plan_id,name,email\n"
    write(tmp_path, "many.csv", header + "\n".join(rows) + "\n")
    before = snapshot(db_url)
    write(tmp_path, "late.csv", header + "\n".join([*rows, rows[1], "z,gold,,"]) + "\n")
    refused(cli("subscriptions", "import", "late.csv"), f"line {CHUNK + 13}: unknown plan 'gold'")
    assert snapshot(db_url) == before

    result = js(cli("subscriptions", "import", "many.csv", "--json"))
    assert (result["subscriptions"], result["new_customers"]) == (CHUNK + 10, CHUNK + 9)
    engine = create_engine(db_url)
    with engine.connect() as connection:
        customer = connection.execute(DUP_CUSTOMER).one()
    engine.dispose()
    assert tuple(customer) == ("First", None, 2)


def test_a_file_changed_between_the_two_passes_imports_nothing(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "moving.csv"
    path.write_text("customer_uid,plan_id\nc1,basic-monthly\n")
    real_insert = imports._insert

    def insert_while_someone_appends(*args: Any) -> imports.ImportReport:
        with path.open("a") as handle:
            handle.write("c2,basic-monthly\n")
        return real_insert(*args)

    monkeypatch.setattr(imports, "_insert", insert_while_someone_appends)
    changed = r"moving\.csv: changed while it was being imported"
    with pytest.raises(InvalidInput, match=changed), app.transaction() as session:
        ensure_catalog(session, app.settings, NOW)
        imports.import_file(session, path, NOW)
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


# -- hostile files (issue 14, item 7): one line naming the line and column, exit 1, nothing written

NESTED = "[" * 100_000 + "]" * 100_000
MAX_LINE = 1 << 20  # imports.MAX_LINE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "customer_uid,plan_id,name\nc1,basic-monthly,nu\0l\n",
            "line 2: name: a NUL byte ('\\x00') is not allowed",
        ),
        (
            "customer_uid,plan_id,name\nc1,basic-monthly,\x1b[31mred\n",
            "line 2: name: a control character ('\\x1b') is not allowed",
        ),
        (
            "customer_uid,plan_id,name\nc1,basic-monthly," + "가" * 300 + "\n",
            "line 2: name: longer than 200 characters (300)",
        ),
        (
            'customer_uid,plan_id,name\nc1,basic-monthly,"' + "x" * 200_000 + '"\n',
            "line 2: name: longer than 200 characters (200000)",
        ),
        (
            "customer_uid,plan_id,email\nc1,basic-monthly," + "y" * 200_000 + "@example.com\n",
            "line 2: email: longer than 254 characters",
        ),
        (
            "customer_uid,plan_id,name\nc1,basic-monthly," + "z" * (MAX_LINE + 1) + "\n",
            f"line 2: longer than {MAX_LINE} characters",
        ),
        (
            '{"customer_uid": "c1", "plan_id": "basic-monthly"}\n{"name": ' + NESTED + "}\n",
            "line 2: not a JSON object",
        ),
        (
            '{"customer_uid": "c1", "plan_id": "basic-monthly", "name": "a\\u0000b"}\n',
            "line 1: name: a NUL byte",
        ),
        (
            "customer_uid,plan_id,customer_uid\nc1,basic-monthly,c2\n",
            "line 1: column customer_uid appears more than once",
        ),
        (
            "customer_uid,plan_id,plan_id\nc1,basic-monthly,premium-yearly\n",
            "line 1: column plan_id appears more than once",
        ),
    ],
)
def test_a_hostile_file_is_one_line_and_imports_nothing(
    cli: CliRunner, db_url: str, tmp_path: Path, text: str, expected: str
) -> None:
    ok(cli("plans", "list"))
    name = write(tmp_path, "bad.csv" if not text.startswith("{") else "bad.jsonl", text)
    before = snapshot(db_url)
    result = cli("subscriptions", "import", name)
    line = refused(result, expected)
    assert result.code == 1 and len(line) < 400, (result.code, line[:400])
    assert "INSERT" not in line and "Traceback" not in result.err
    assert snapshot(db_url) == before


def test_import_dev_zero_stops_at_once(cli: CliRunner, db_url: str) -> None:
    ok(cli("plans", "list"))
    before = snapshot(db_url)
    result = cli("subscriptions", "import", "/dev/zero")
    assert result.code == 1
    refused(result, "/dev/zero: line 1: a NUL byte: not a text file")
    assert snapshot(db_url) == before


def test_a_pipe_larger_than_the_limit_is_refused(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "MAX_BYTES", 10_000)
    fifo = tmp_path / "rows"
    os.mkfifo(fifo)
    rows = "customer_uid,plan_id\n" + "".join(f"c{n},basic-monthly\n" for n in range(2000))
    writer = threading.Thread(target=lambda: fifo.write_text(rows), daemon=True)
    writer.start()
    with app.transaction() as session:
        ensure_catalog(session, app.settings, NOW)
    refusal = pytest.raises(InvalidInput, match="larger than 10000 bytes, the import limit")
    with refusal, app.transaction() as session:
        imports.import_file(session, fifo, NOW)
    writer.join(5)
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
