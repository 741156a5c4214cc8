"""Loading catalogs into PostgreSQL: versions, archiving, all or nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from billing.app import App
from billing.catalog_file import parse_catalog
from billing.db.tables import CatalogLoad, PlanVersion
from billing.errors import CatalogError
from billing.services import plan_store
from billing.services.customers import add_customer
from billing.services.subscriptions import create_subscription
from tests.conftest import NOW

BASIC = "- {id: basic, name: 베이직, amount: 9900, interval: 1 month}\n"
PRO = "- {id: pro, name: 프로, amount: 29000, interval: 1 month}\n"


def load(app: App, *plans: str) -> plan_store.LoadReport:
    text = "plans:\n" + "".join("  " + p for p in plans)
    catalog = parse_catalog(text, "c.yaml", "Asia/Seoul")
    with app.transaction() as session:
        return plan_store.load_catalog(session, catalog, "c.yaml", "sha", app.clocks.billing.now())


def test_first_load_creates_version_1(app: App) -> None:
    report = load(app, BASIC, PRO)
    assert report.created == ["basic", "pro"]
    with app.transaction() as session:
        assert [(p.id, p.version, p.amount) for p in plan_store.current_plans(session)] == [
            ("basic", 1, 9900),
            ("pro", 1, 29000),
        ]


def test_a_price_change_is_a_new_version_and_the_old_terms_stay(app: App) -> None:
    load(app, BASIC)
    report = load(app, BASIC.replace("9900", "10900"))
    assert report.changed == ["basic"]
    with app.transaction() as session:
        assert plan_store.current_plan(session, "basic").amount == 10900
        assert plan_store.current_plan(session, "basic").version == 2
        assert plan_store.plan_version(session, "basic", 1).amount == 9900


def test_loading_the_same_catalog_again_changes_nothing(app: App) -> None:
    load(app, BASIC)
    assert load(app, BASIC).unchanged == ["basic"]
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PlanVersion)) == 1


def test_a_plan_left_out_is_archived_when_nobody_uses_it(app: App) -> None:
    load(app, BASIC, PRO)
    assert load(app, BASIC).archived == ["pro"]
    with app.transaction() as session:
        assert [p.id for p in plan_store.current_plans(session)] == ["basic"]


def test_removing_a_plan_with_live_subscriptions_is_refused_and_nothing_changes(app: App) -> None:
    load(app, BASIC, PRO)
    with app.transaction() as session:
        add_customer(session, "c1", NOW)
        create_subscription(session, "c1", "pro", NOW, NOW)
    with pytest.raises(CatalogError, match="plan 'pro': removing a plan with 1 live subscription"):
        load(app, BASIC.replace("9900", "1"))  # a change to basic in the same file is not kept
    with app.transaction() as session:
        assert [(p.id, p.amount) for p in plan_store.current_plans(session)] == [
            ("basic", 9900),
            ("pro", 29000),
        ]
        assert session.scalar(select(func.count()).select_from(CatalogLoad)) == 1


def test_dunning_policy_is_stored_with_the_version(app: App) -> None:
    load(
        app,
        "- {id: d, name: D, amount: 1000, interval: 1 week, dunning: {retry_after: [12h, 2d], final_action: pause}}\n",
    )
    with app.transaction() as session:
        plan = plan_store.current_plan(session, "d")
    assert plan.dunning.retry_after == (timedelta(hours=12), timedelta(days=2))
    assert plan.dunning.final_action == "pause"


def test_two_first_uses_of_an_empty_database_at_once_load_the_catalog_once(app: App) -> None:
    """The first API requests of a new install arrive together (the benchmark found a 500)."""
    settings = app.settings
    outcome: list[BaseException | None] = []

    def second_use() -> None:
        try:
            with app.transaction() as session:
                plan_store.ensure_catalog(session, settings, NOW)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with app.transaction() as first:
        plan_store.ensure_catalog(first, settings, NOW)  # the first load, not yet committed
        racer = threading.Thread(target=second_use)
        racer.start()
        racer.join(1.0)  # the second use waits for the first (or fails at once on old code)
    racer.join(30)
    assert outcome == [None]
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(CatalogLoad)) == 1
        assert [p.id for p in plan_store.current_plans(session)][:1] == ["basic-monthly"]
