"""Fuzzing the environment (billing/config.py): any value of any variable gives valid
Settings or a one-line ConfigError that starts with the variable's name, never another
exception, and never echoes a credential."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing.config import VARIABLES, Settings, load_settings
from billing.errors import ConfigError

# Variables whose values may carry credentials (the product hides their values in messages).
# BILLING_PORTONE_URL is one too, but see test_a_refused_portone_url_is_not_echoed below.
SECRET_VARIABLES = (
    "BILLING_PORTONE_IMP_KEY",
    "BILLING_PORTONE_IMP_SECRET",
    "FLOWER_BASIC_AUTH",
    "BILLING_OPS_AUTH",
    "BILLING_METRICS_TOKEN",
    "BILLING_DATABASE_URL",
    "BILLING_BROKER_URL",
)
TRICKY = [
    "",
    " ",
    "0",
    "-1",
    "1",
    "30",
    " 30 ",
    "1e309",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1_000",
    "0x10",
    "٣٠",
    "30s",
    "1.5",
    "600.0000001",
    "86401",
    "true",
    "yes",
    "on",
    "off",
    "2",
    "sqlite://",
    "sqlite:///",
    "sqlite:////nonexistent/dir/x.db",
    "postgresql://",
    "postgres://u:p@h:x/d",
    "postgresql+psycopg://u:p@[::1]:5432/db",
    "mysql://u@h/d",
    "redis://",
    "redis://:p@h:99999/0",
    "memory://",
    "http://",
    "https://x",
    "http://[::1",
    "ftp://user:pw@host/",
    "Asia/Seoul",
    "../../etc/passwd",
    "/etc/localtime",
    "Asia",
    "UTC",
    "user:",
    ":password",
    "user:password",
    "a" * 10_000,
    "\x00",
    "line\nbreak",
    "\udcff",
    "☃",
    "%(foo)s",
    "{0}",
    "${HOME}",
]
CANARY = "s3cr3t"  # a credential inside a value must never come back in the message
with_canary = st.builds(lambda a, b: f"{a}{CANARY}{b}", st.text(max_size=20), st.text(max_size=20))
values = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=40),
    st.text(max_size=2000),
    with_canary,
    st.sampled_from(
        [
            f"postgresql://u:{CANARY}@h:x/d",
            f"redis://:{CANARY}@h:1/0",
            f"ftp://u:{CANARY}@h/",
            f"u:{CANARY}",
            f"{CANARY}:",
            f"amqps://u:{CANARY}@",
        ]
    ),
)
FUZZ = settings(max_examples=400, deadline=None)


def judge(environ: dict[str, str]) -> None:
    try:
        result = load_settings(environ)
    except ConfigError as exc:
        message = exc.message
        assert "\n" not in message and "\r" not in message
        variable = message.split(":", 1)[0]
        cross = variable == "BILLING_RECONCILE_AFTER" and "BILLING_PORTONE_TIMEOUT" in message
        assert variable in environ or cross, f"{message!r} does not name a variable given"
        if variable in SECRET_VARIABLES and CANARY in environ.get(variable, ""):
            assert CANARY not in message, f"{variable}'s value is echoed in {message!r}"
        return
    assert isinstance(result, Settings)


@FUZZ
@given(st.sampled_from(VARIABLES), values)
@example("BILLING_PORTONE_TIMEOUT", "500")  # longer than the default reconciliation window
@example("BILLING_DATABASE_URL", "postgresql://user:s3cr3t@host:notaport/db")
@example("BILLING_BROKER_URL", "rabbit://user:s3cr3t@host:5671/")
def test_any_value_of_one_variable_is_accepted_or_refused_by_name(name: str, value: str) -> None:
    judge({name: value})


@FUZZ
@given(st.dictionaries(st.sampled_from(VARIABLES), values, max_size=len(VARIABLES)))
def test_any_environment_is_accepted_or_refused_naming_a_variable(environ: dict[str, str]) -> None:
    judge(environ)


def test_a_refused_portone_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"BILLING_PORTONE_URL": f"htps://user:{CANARY}@proxy.example/"})
    assert CANARY not in refused.value.message
