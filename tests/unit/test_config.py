"""Settings: defaults of SPEC section 3, and one-line errors naming the variable."""

from __future__ import annotations

import pytest

from billing.config import VARIABLES, load_settings
from billing.errors import ConfigError


def test_defaults_are_the_embedded_product() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///billing.db"
    assert settings.broker_url is None
    assert settings.portone_url is None
    assert settings.portone_timeout == 30
    assert settings.reconcile_after == 300
    assert settings.plans == "schedules/plans.yaml"
    assert settings.timezone == "Asia/Seoul"
    assert settings.sandbox is False
    assert settings.log_level == "INFO"
    assert not settings.has_credentials


@pytest.mark.parametrize(("value", "expected"), [("debug", "DEBUG"), (" Warning ", "WARNING")])
def test_log_level_is_read_in_any_case(value: str, expected: str) -> None:
    assert load_settings({"BILLING_LOG_LEVEL": value}).log_level == expected


def test_pgbouncer_is_read_for_postgresql_only() -> None:
    postgres = {"BILLING_DATABASE_URL": "postgresql://billing@pgbouncer:6432/billing"}
    assert load_settings(postgres).database_pgbouncer is False
    assert load_settings({**postgres, "BILLING_DATABASE_PGBOUNCER": "yes"}).database_pgbouncer
    with pytest.raises(ConfigError, match=r"^BILLING_DATABASE_PGBOUNCER: is for PostgreSQL"):
        load_settings({"BILLING_DATABASE_PGBOUNCER": "1"})  # the SQLite default
    with pytest.raises(ConfigError, match=r"^BILLING_DATABASE_PGBOUNCER: must be 1 or 0"):
        load_settings({**postgres, "BILLING_DATABASE_PGBOUNCER": "transaction"})


def test_every_spec_variable_is_read() -> None:
    assert set(VARIABLES) == {
        "BILLING_DATABASE_URL",
        "BILLING_BROKER_URL",
        "BILLING_PORTONE_URL",
        "BILLING_PORTONE_IMP_KEY",
        "BILLING_PORTONE_IMP_SECRET",
        "BILLING_PORTONE_TIMEOUT",
        "BILLING_RECONCILE_AFTER",
        "BILLING_PLANS",
        "BILLING_TIMEZONE",
        "BILLING_SANDBOX",
        "BILLING_PORTONE_SITE_CODE",
        "BILLING_PORTONE_MERCHANT_CODE",
        "FLOWER_BASIC_AUTH",
        "BILLING_PORTONE_MAX_RPS",
        "BILLING_OPS_AUTH",
        "BILLING_METRICS_TOKEN",
        "BILLING_LOG_LEVEL",
        "BILLING_CHECKOUT_REDIRECT_URL",
        "BILLING_CONSOLE_URL",  # ours, beyond SPEC section 3
        "BILLING_DATABASE_PGBOUNCER",
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BILLING_DATABASE_URL", "mysql://root@localhost/db"),
        ("BILLING_DATABASE_URL", "not a url"),
        ("BILLING_BROKER_URL", "kafka://localhost"),
        ("BILLING_PORTONE_URL", "api.iamport.kr"),
        ("BILLING_PORTONE_TIMEOUT", "abc"),
        ("BILLING_PORTONE_TIMEOUT", "0"),
        ("BILLING_PORTONE_TIMEOUT", "-5"),
        ("BILLING_RECONCILE_AFTER", "5m"),
        ("BILLING_RECONCILE_AFTER", "0"),
        ("BILLING_TIMEZONE", "Seoul"),
        ("BILLING_SANDBOX", "maybe"),
        ("BILLING_PLANS", ""),
        ("FLOWER_BASIC_AUTH", "admin"),
        ("BILLING_LOG_LEVEL", "loud"),
        ("BILLING_LOG_LEVEL", "10"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert caught.value.message.startswith(f"{variable}: ")
    assert "\n" not in caught.value.message


def test_secrets_in_a_wrong_value_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"BILLING_DATABASE_URL": "mysql://admin:hunter2@db/x"})
    assert "hunter2" not in caught.value.message
    with pytest.raises(ConfigError) as caught:
        load_settings({"FLOWER_BASIC_AUTH": "hunter2"})
    assert "hunter2" not in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_sandbox_flag(value: str, expected: bool) -> None:
    assert load_settings({"BILLING_SANDBOX": value}).sandbox is expected


def test_secret_values_never_show_in_repr() -> None:
    settings = load_settings(
        {"BILLING_PORTONE_IMP_SECRET": "s3cr3t-value", "BILLING_PORTONE_IMP_KEY": "k"}
    )
    assert "s3cr3t-value" not in repr(settings)
    assert settings.has_credentials


def test_postgres_urls_use_psycopg_3() -> None:
    from billing.db.engine import normalize_url

    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_passwords_inside_the_store_urls_are_kept_out_of_logs() -> None:
    """compose puts BILLING_DB_PASSWORD and BILLING_REDIS_PASSWORD into the two URLs."""
    settings = load_settings(
        {
            "BILLING_DATABASE_URL": "postgresql+psycopg://billing:db-pw-1234@postgres/billing",
            "BILLING_BROKER_URL": "redis://:redis-pw-5678@redis:6379/0",
        }
    )
    assert {"db-pw-1234", "redis-pw-5678"} <= set(settings.log_secrets)


def test_the_console_password_and_the_metrics_token_are_kept_out_of_logs() -> None:
    """A web process logs with these secrets: a line quoting either shows neither."""
    from billing.logs import redact

    settings = load_settings(
        {"BILLING_OPS_AUTH": "oncall:console-pw-9876", "BILLING_METRICS_TOKEN": "scrape-tok-4321"}
    )
    line = redact("auth oncall:console-pw-9876 bearer scrape-tok-4321", settings.log_secrets)
    assert "console-pw-9876" not in line
    assert "scrape-tok-4321" not in line
    assert "console-pw-9876" not in repr(settings)
