"""Settings from the environment (SPEC section 3), validated once at start.

A wrong value is a one-line ``ConfigError`` that names the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import ArgumentError

from billing.catalog_file import load_zone
from billing.db.engine import normalize_url
from billing.errors import ConfigError

DEFAULT_PORTONE_URL = "https://api.iamport.kr"
SANDBOX_IMP_KEY = "sandbox_key"  # what the bundled sandbox accepts unless told otherwise
SANDBOX_IMP_SECRET = "sandbox_secret"  # noqa: S105 (a public sandbox credential)
DEFAULT_PLANS = "schedules/plans.yaml"
BROKER_SCHEMES = ("redis://", "rediss://", "memory://", "amqp://", "amqps://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
HTTP_URL = re.compile(r"https?://[!-~]+")  # printable ASCII: no space, newline or control
SITE_CODE = re.compile(r"[A-Za-z0-9]{1,20}")
MERCHANT_CODE = re.compile(r"imp[0-9]{1,20}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"must be 1 or 0 (also true/false, yes/no, on/off), got {value!r}")
    return value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


Flag = Annotated[bool, BeforeValidator(_flag)]
Optional = BeforeValidator(_blank_is_none)


class Settings(BaseModel):
    """Every setting the product reads, by its environment variable name."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    database_url: str = Field("sqlite:///billing.db", alias="BILLING_DATABASE_URL")
    database_pgbouncer: Flag = Field(False, alias="BILLING_DATABASE_PGBOUNCER")
    broker_url: Annotated[str | None, Optional] = Field(None, alias="BILLING_BROKER_URL")
    portone_url: Annotated[str | None, Optional] = Field(None, alias="BILLING_PORTONE_URL")
    imp_key: Annotated[SecretStr | None, Optional] = Field(None, alias="BILLING_PORTONE_IMP_KEY")
    imp_secret: Annotated[SecretStr | None, Optional] = Field(
        None, alias="BILLING_PORTONE_IMP_SECRET"
    )
    portone_timeout: float = Field(30.0, alias="BILLING_PORTONE_TIMEOUT", gt=0, le=600)
    portone_max_rps: Annotated[float | None, Optional] = Field(
        None, alias="BILLING_PORTONE_MAX_RPS", gt=0, le=100_000
    )
    reconcile_after: int = Field(300, alias="BILLING_RECONCILE_AFTER", ge=1, le=86400)
    plans: str = Field(DEFAULT_PLANS, alias="BILLING_PLANS", min_length=1)
    timezone: str = Field("Asia/Seoul", alias="BILLING_TIMEZONE")
    sandbox: Flag = Field(False, alias="BILLING_SANDBOX")
    site_code: Annotated[str | None, Optional] = Field(None, alias="BILLING_PORTONE_SITE_CODE")
    merchant_code: Annotated[str | None, Optional] = Field(
        None, alias="BILLING_PORTONE_MERCHANT_CODE"
    )
    checkout_redirect_url: Annotated[str | None, Optional] = Field(
        None, alias="BILLING_CHECKOUT_REDIRECT_URL"
    )
    flower_basic_auth: Annotated[SecretStr | None, Optional] = Field(
        None, alias="FLOWER_BASIC_AUTH"
    )
    console_url: Annotated[str | None, Optional] = Field(None, alias="BILLING_CONSOLE_URL")
    # read and checked by the web process (billing.web); here so that logs never show them
    ops_auth: Annotated[SecretStr | None, Optional] = Field(None, alias="BILLING_OPS_AUTH")
    metrics_token: Annotated[SecretStr | None, Optional] = Field(
        None, alias="BILLING_METRICS_TOKEN"
    )
    log_level: str = Field("INFO", alias="BILLING_LOG_LEVEL")  # beyond SPEC: see README

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        try:
            url = normalize_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL such as sqlite:///billing.db") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("database_pgbouncer")
    @classmethod
    def _pgbouncer(cls, value: bool, info: ValidationInfo) -> bool:
        url = info.data.get("database_url")  # absent when BILLING_DATABASE_URL itself is wrong
        if value and url is not None and normalize_url(url).get_backend_name() != "postgresql":
            raise ValueError("is for PostgreSQL behind PgBouncer: BILLING_DATABASE_URL is not one")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(BROKER_SCHEMES):
            raise ValueError("must be a redis://, rediss://, amqp:// or memory:// URL")
        return value

    @field_validator("portone_url", "checkout_redirect_url", "console_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if not HTTP_URL.fullmatch(value):
            raise ValueError("must be one URL without spaces or control characters")
        return value.rstrip("/")

    @field_validator("site_code")
    @classmethod
    def _site_code(cls, value: str | None) -> str | None:
        if value is not None and not SITE_CODE.fullmatch(value):
            raise ValueError("must be a KCP site code: 1 to 20 letters and digits")
        return value

    @field_validator("merchant_code")
    @classmethod
    def _merchant_code(cls, value: str | None) -> str | None:
        if value is not None and not MERCHANT_CODE.fullmatch(value):
            raise ValueError("must be PortOne's merchant code (가맹점 식별코드): imp and digits")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("flower_basic_auth")
    @classmethod
    def _basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, _, password = value.get_secret_value().partition(":")
            if not user or not password:
                raise ValueError("must be user:password")
        return value

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        if self.reconcile_after <= self.portone_timeout:
            raise ValueError(
                f"must be longer than BILLING_PORTONE_TIMEOUT ({self.portone_timeout:g} s), or a "
                "charge could be sent again while its first request is still in flight"
            )
        return self

    @property
    def plans_path(self) -> Path:
        return Path(self.plans)

    @property
    def has_credentials(self) -> bool:
        return self.imp_key is not None and self.imp_secret is not None

    @property
    def log_secrets(self) -> tuple[str, ...]:
        """What no log line may show: PortOne credentials, the metrics token, and the
        passwords of Flower, the console and the two stores."""
        values = [
            v.get_secret_value() for v in (self.imp_secret, self.imp_key, self.metrics_token) if v
        ]
        if self.sandbox_mode and self.imp_secret is None:
            values.append(SANDBOX_IMP_SECRET)
        for basic in (self.flower_basic_auth, self.ops_auth):
            if basic is not None:
                auth = basic.get_secret_value()
                values += [auth, auth.partition(":")[2]]
        values += [_password(url) for url in (self.database_url, self.broker_url) if url]
        return tuple(v for v in values if len(v) >= 4)

    @property
    def embedded(self) -> bool:
        """Nothing configured: SQLite, in-process broker, bundled sandbox."""
        return (
            self.database_url.startswith("sqlite")
            and self.broker_url is None
            and self.portone_url is None
            and not self.has_credentials
        )

    @property
    def sandbox_mode(self) -> bool:
        """Test clock and sandbox-only commands: BILLING_SANDBOX=1, or the embedded default."""
        return self.sandbox or self.embedded


def _password(url: str) -> str:
    """The password inside a database or broker URL (compose puts them there), or ""."""
    try:
        return normalize_url(url).password or ""
    except ArgumentError:
        return ""


VARIABLES = tuple(
    str(field.alias) for field in Settings.model_fields.values() if field.alias is not None
)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises ConfigError naming the first bad variable."""
    source = os.environ if environ is None else environ
    values = {name: source[name] for name in VARIABLES if name in source}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    variable = str(error["loc"][0]) if error["loc"] else "BILLING_RECONCILE_AFTER"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = _shown(variable, message, error.get("input"), bool(error["loc"]))
    return f"{variable}: {message}{shown}"


def _shown(variable: str, message: str, value: object, error_loc: bool) -> str:
    """The offending value, unless it may carry a secret (keys, passwords in URLs)."""
    hidden = ("SECRET", "AUTH", "KEY", "_URL")
    if any(part in variable for part in hidden) or repr(value) in message or not error_loc:
        return ""
    return f" (got {value!r})"
