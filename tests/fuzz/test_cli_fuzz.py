"""Fuzzing the command line: ``python -m billing`` in subprocesses, with random and garbage
arguments for a handful of commands, against a test database holding a catalog, a customer
and a subscription.

Every garbage invocation exits non-zero with exactly one line on stderr (``billing: error:
...``), never a traceback nor an "internal error", and changes nothing in the database.
Each run costs most of a second, so the number of runs is modest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.subscriptions import create_subscription
from tests.conftest import NOW, CliRunner, snapshot
from tests.processes import ROOT

SHIPPED = (ROOT / "schedules" / "plans.yaml").read_text()
garbage = st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t)
NOT_NUMBERS = ["-1", "0", "1e3", "0x10", "1.5", "+-1", " ", "", "NaN", "--"]
OTHER_DIGITS = ["1_0", "\u0661", "\uff11\uff12", "\u0967"]  # int() reads these; we refuse them
not_a_number = st.one_of(  # numbers beyond bigint: see test_a_number_beyond_bigint_...
    st.sampled_from(NOT_NUMBERS + OTHER_DIGITS),
    garbage.map(lambda t: f"x{t}"),
)
BAD_UID_CHARS = " /%#?&\\\"'`\t한"


@st.composite
def bad_uid(draw: st.DrawFn) -> str:
    """A customer_uid that must be refused: a forbidden character, or more than 80."""
    if draw(st.booleans()):
        return "u" * draw(st.integers(81, 200))
    text = draw(st.text(max_size=10).filter(lambda t: "\x00" not in t))
    return text + draw(st.sampled_from(BAD_UID_CHARS)) + text


def bad_catalog(amount: object) -> str:
    document = yaml.safe_load(SHIPPED)
    document["plans"][0]["amount"] = amount
    return yaml.safe_dump(document, allow_unicode=True)


commands = st.one_of(
    st.tuples(st.just("customers"), st.just("add"), bad_uid()),
    st.tuples(
        st.just("customers"),
        st.just("add"),
        st.just("new-customer"),
        st.just("--email"),
        garbage.map(lambda t: t.replace("@", "") or "x"),
    ),
    st.tuples(
        st.just("subscriptions"),
        st.just("create"),
        st.just("--customer"),
        garbage.map(lambda t: f"nobody-{t}"),
        st.just("--plan"),
        st.just("basic-monthly"),
    ),
    st.tuples(
        st.just("subscriptions"),
        st.just("create"),
        st.just("--customer"),
        st.just("cust-1"),
        st.just("--plan"),
        garbage.map(lambda t: f"no-plan-{t}"),
    ),
    st.tuples(
        st.just("subscriptions"),
        st.just("create"),
        st.just("--customer"),
        st.just("cust-1"),
        st.just("--plan"),
        st.just("basic-monthly"),
        st.just("--start"),
        garbage.map(lambda t: f"{t}!!"),
    ),
    st.tuples(
        st.sampled_from(["show", "cancel", "pause", "resume", "events"]).map(
            lambda c: f"subscriptions {c}"
        ),
        st.one_of(not_a_number, st.just("999999")),
    ),
    st.tuples(
        st.just("subscriptions"),
        st.just("change-plan"),
        st.just("1"),
        st.just("--plan"),
        garbage.map(lambda t: f"no-plan-{t}"),
    ),
    st.tuples(
        st.just("charges"),
        st.just("list"),
        st.sampled_from(["--status", "--subscription", "--limit"]),
        not_a_number,
    ),
    st.tuples(
        st.just("plans"),
        st.just("preview"),
        st.just("basic-monthly"),
        st.sampled_from(["--count", "--start"]),
        not_a_number,
    ),
    st.tuples(
        st.just("clock"), st.sampled_from(["set", "advance"]), garbage.map(lambda t: f"{t}!!")
    ),
    st.tuples(
        st.just("plans"),
        st.just("load"),
        st.sampled_from([-1, 0, 1.5, "9900", None, 10**13, [], "", True]).map(
            lambda amount: f"@{bad_catalog(amount)}"
        ),
    ),
    st.tuples(garbage.map(lambda t: f"no-such-command-{t}")),
    st.tuples(
        st.sampled_from(["subscriptions", "customers", "charges", "plans", "clock"]),
        garbage.map(lambda t: f"--{t}"),
    ),
)


@pytest.fixture
def seeded(app: App, cli: CliRunner) -> CliRunner:
    """A catalog (so no command loads one on first use), a customer and a subscription."""
    with app.transaction() as session:
        parsed = parse_catalog(SHIPPED, "plans.yaml", "Asia/Seoul")
        plan_store.load_catalog(session, parsed, "plans.yaml", "sha", NOW)
        add_customer(session, "cust-1", NOW)
        create_subscription(session, "cust-1", "basic-monthly", NOW, NOW)
    return cli


def expand(words: tuple[str, ...], tmp_path: Path) -> list[str]:
    """Split "a b" words; "@text" becomes a file holding text."""
    argv: list[str] = []
    for word in words:
        if word.startswith("@"):
            path = tmp_path / "catalog.yaml"
            path.write_text(word[1:])
            argv.append(str(path))
        elif word.startswith(("subscriptions ", "charges ")):
            argv += word.split(" ")
        else:
            argv.append(word)
    return argv


@settings(
    max_examples=14,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands)
@example(
    (
        "subscriptions",
        "create",
        "--customer",
        "cust-1",
        "--plan",
        "basic-monthly",
        "--start",
        "2027-02-30T00:00:00+09:00",
    )
)
@example(("customers", "add", "a" * 81))
@example(("plans", "load", "@plans: [{id: x, name: X, amount: 1, interval: 1 month, x: 1}]"))
def test_garbage_arguments_give_one_line_and_change_nothing(
    seeded: CliRunner, db_url: str, tmp_path: Path, words: tuple[str, ...]
) -> None:
    argv = expand(words, tmp_path)
    before = snapshot(db_url)
    result = seeded(*argv, env={"BILLING_SANDBOX": "1"})
    lines = result.err.splitlines()
    assert result.code in (1, 2), (argv, result)
    assert len(lines) == 1 and lines[0].startswith("billing: error: "), (argv, result.err)
    assert "internal error" not in result.err and "Traceback" not in result.err, result.err
    assert snapshot(db_url) == before, argv


@pytest.mark.parametrize(
    "argv",
    [
        ("subscriptions", "cancel", "9" * 20),
        ("charges", "list", "--subscription", "9" * 20),
        ("charges", "list", "--limit", "9" * 20),
    ],
)
def test_a_number_beyond_bigint_is_a_clean_refusal(
    seeded: CliRunner, db_url: str, argv: tuple[str, ...]
) -> None:
    before = snapshot(db_url)
    result = seeded(*argv)
    assert snapshot(db_url) == before
    assert result.code in (1, 2) and "internal error" not in result.err, result.err[:300]
