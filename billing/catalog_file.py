"""Reading a plan catalog (YAML) into a validated ``Catalog``, all or nothing.

Every refusal names the file, the plan and the field, in one line.
"""

from __future__ import annotations

import itertools
import re
import reprlib
import sys
import unicodedata
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from billing.domain.charges import ORDER_NAME_MAX
from billing.domain.dunning import MAX_DECLINES_PER_CARD, DunningPolicy, FinalAction
from billing.domain.durations import parse_interval, parse_offset
from billing.domain.plans import (
    MIN_INSTALLMENT_AMOUNT,
    Catalog,
    NotifyChannel,
    Plan,
    Reminders,
)
from billing.errors import CatalogError
from billing.signing import literal_host_is_private

NOT_ECHOED = "secret_in_url"  # an error type whose input never shows in the message
SMTP_URL_REFUSAL = (
    "a password inside smtp_url would be stored in the database: put it in an environment "
    "variable and name that variable with password_env"
)

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
PLAN_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_CATALOG_BYTES = 4 * 1024 * 1024
MAX_AMOUNT = 10**12  # KRW; anything larger is a typo


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DunningSpec(_Strict):
    retry_after: list[str] = Field(default_factory=lambda: ["1d", "3d", "7d"])
    final_action: Literal["cancel", "pause"] = "cancel"

    @field_validator("retry_after")
    @classmethod
    def _offsets(cls, value: list[str]) -> list[str]:
        offsets = [parse_offset(item) for item in value]
        if any(later <= earlier for earlier, later in itertools.pairwise(offsets)):
            raise ValueError("offsets must increase (each counts from the first failure)")
        if any(offset <= timedelta(0) for offset in offsets):
            raise ValueError("offsets must be positive")
        in_30_days = 1 + sum(1 for offset in offsets if offset < timedelta(days=30))
        if in_30_days > MAX_DECLINES_PER_CARD:
            raise ValueError(
                f"more than {MAX_DECLINES_PER_CARD} attempts in 30 days (card-network rule)"
            )
        return value

    def policy(self) -> DunningPolicy:
        return DunningPolicy(
            tuple(parse_offset(item) for item in self.retry_after),
            FinalAction(self.final_action),
        )


class RemindersSpec(_Strict):
    upcoming_renewal: str = "3d"
    trial_will_end: str = "3d"

    @field_validator("upcoming_renewal", "trial_will_end")
    @classmethod
    def _lead(cls, value: str) -> str:
        if parse_offset(value) > timedelta(days=60):
            raise ValueError("at most 60 days ahead")
        return value

    def reminders(self) -> Reminders:
        return Reminders(parse_offset(self.upcoming_renewal), parse_offset(self.trial_will_end))


class LogChannel(_Strict):
    type: Literal["log"]


class WebhookChannel(_Strict):
    """``url`` must reach a public address: a loopback, private or link-local one (the cloud's
    metadata service, an internal admin port) only with ``allow_private: true``. Literal
    addresses are checked here, names when each notice is sent (``billing.notify``)."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    secret_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
    allow_private: StrictBool = False

    @model_validator(mode="after")
    def _public_url(self) -> WebhookChannel:
        if not self.allow_private and literal_host_is_private(self.url):
            raise ValueError(
                "url: not a public address (loopback, private or link-local): notices would "
                "reach internal services; say allow_private: true if that is meant"
            )
        return self


class EmailChannel(_Strict):
    """``smtp_url`` may name the user (``smtp://user@host:587``); the password is read from
    the environment variable ``password_env`` names, never written in the catalog (the
    catalog's channels are stored in the database)."""

    type: Literal["email"]
    smtp_url: Annotated[str, Field(pattern=r"^smtps?://\S+$")]
    from_: Annotated[str, Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")]
    password_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None

    @field_validator("smtp_url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        try:
            password = urlsplit(value).password
        except ValueError:
            raise PydanticCustomError(NOT_ECHOED, "not a valid URL") from None
        if password is not None:
            raise PydanticCustomError(NOT_ECHOED, SMTP_URL_REFUSAL)
        return value

    @model_validator(mode="after")
    def _user_for_password(self) -> EmailChannel:
        if self.password_env and not urlsplit(self.smtp_url).username:
            raise ValueError("password_env needs a user in smtp_url (smtp://user@host:port)")
        return self


Channel = Annotated[LogChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


class PlanSpec(_Strict):
    id: str
    name: str
    amount: StrictInt
    interval: str | None = None
    cron: str | None = None
    timezone: str | None = None
    trial_days: StrictInt = 0
    prorate_first: StrictBool | None = None
    card_quota: StrictInt | None = None
    dunning: DunningSpec | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not PLAN_ID.match(value):
            raise ValueError("must be 1-64 characters of a-z, 0-9, '_' and '-'")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > ORDER_NAME_MAX:
            raise ValueError(f"is sent to PortOne as `name`: at most {ORDER_NAME_MAX} characters")
        hidden = next((c for c in value if _is_control(c)), None)
        if hidden is not None:
            raise ValueError(
                f"control characters (line breaks, terminal escapes, direction overrides) "
                f"are not allowed: {hidden!r} (U+{ord(hidden):04X})"
            )
        return value

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: int) -> int:
        if not 0 < value <= MAX_AMOUNT:
            raise ValueError("must be a whole number of KRW greater than 0")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            parse_interval(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            check_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            load_zone(value)
        return value

    @field_validator("trial_days")
    @classmethod
    def _trial(cls, value: int) -> int:
        if not 0 <= value <= 3660:
            raise ValueError("must be a whole number of days from 0 to 3660")
        return value

    @field_validator("prorate_first")
    @classmethod
    def _prorate(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is not None and info.data.get("cron") is None:
            raise ValueError("only applies to `cron` plans")
        return value

    @field_validator("card_quota")
    @classmethod
    def _quota(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if not (value == 0 or 2 <= value <= 36):
            raise ValueError("must be 0 (lump sum) or 2 to 36 installments")
        amount = info.data.get("amount")
        if value and isinstance(amount, int) and amount < MIN_INSTALLMENT_AMOUNT:
            raise ValueError(f"needs an amount of at least {MIN_INSTALLMENT_AMOUNT} KRW")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> PlanSpec:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("a plan needs exactly one of `interval` and `cron`")
        return self


def _log_only() -> list[LogChannel | WebhookChannel | EmailChannel]:
    return [LogChannel(type="log")]


class CatalogSpec(_Strict):
    timezone: str | None = None
    dunning: DunningSpec = Field(default_factory=DunningSpec)
    notify: list[Channel] = Field(default_factory=_log_only)
    reminders: RemindersSpec = Field(default_factory=RemindersSpec)
    plans: list[PlanSpec]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            load_zone(value)
        return value


def check_cron(expr: str) -> None:
    """Refuse anything but a five-field cron expression that fires at least once a decade."""
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a five-field cron expression")
    try:
        croniter(expr).get_next(float)
    except Exception:  # croniter raises several types for expressions that never fire
        raise ValueError(f"{expr!r} never fires") from None


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as Asia/Seoul") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be plain text", key_node.start_mark
            )
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_catalog_file(path: Path, default_zone: str) -> Catalog:
    """Read, parse and validate a catalog file. Raises CatalogError naming file, plan, field."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{path}: larger than {MAX_CATALOG_BYTES} bytes")
    return parse_catalog(raw, str(path), default_zone)


def parse_catalog(raw: bytes | str, source: str, default_zone: str) -> Catalog:
    document = _parse_yaml(raw, source)
    if not isinstance(document, dict):
        raise CatalogError(f"{source}: a catalog is a mapping with a `plans:` list")
    try:
        spec = CatalogSpec.model_validate(document)
    except ValidationError as exc:
        raise CatalogError(_describe(exc, document, source)) from None
    duplicate = _first_duplicate([plan.id for plan in spec.plans])
    if duplicate is not None:
        raise CatalogError(f"{source}: plan {duplicate!r}: id: duplicate plan id")
    return _to_catalog(spec, default_zone)


def _parse_yaml(raw: bytes | str, source: str) -> Any:
    try:
        return yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise CatalogError(f"{source}: {where}not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise CatalogError(f"{source}: not valid YAML: {type(exc).__name__}") from None
    except ValueError:  # a number longer than Python reads (4300 digits): nothing is that big
        limit = sys.get_int_max_str_digits()
        raise CatalogError(
            f"{source}: not valid YAML: a number longer than {limit} digits"
        ) from None


def _is_control(char: str) -> bool:
    """C0 and C1 controls (ESC starts a terminal escape) and the bidirectional overrides."""
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for plan_id in ids:
        if plan_id in seen:
            return plan_id
        seen.add(plan_id)
    return None


def _describe(exc: ValidationError, document: dict[str, Any], source: str) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = _where(loc, document)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required"
    if "input" in error and error["type"] not in ("missing", "extra_forbidden", NOT_ECHOED):
        message += f" (got {_short(error['input'])})"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {where}{message}{suffix}"


def _where(loc: list[Any], document: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] == "plans" and isinstance(loc[1], int):
        plans = document.get("plans")
        entry = plans[loc[1]] if isinstance(plans, list) and loc[1] < len(plans) else None
        plan_id = entry.get("id") if isinstance(entry, dict) else None
        label = f"plan {plan_id!r}" if isinstance(plan_id, str) else f"plan #{loc[1] + 1}"
        field = _dotted(loc[2:]) or "interval/cron"  # the one check across fields
        return f"{label}: {field}: "
    return f"{_dotted(loc) or '(catalog)'}: "


def _dotted(loc: list[Any]) -> str:
    parts = [
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in loc
        if part not in ("log", "webhook", "email")
    ]
    return "".join(parts).lstrip(".")


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxlist, bounded.maxdict = 2, 4, 4
    bounded.maxstring, bounded.maxother = 40, 40
    return bounded


_SHORT = _bounded_repr()


def _short(value: Any) -> str:
    """A bounded repr: a value built of YAML aliases can be exponentially large."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_catalog(spec: CatalogSpec, default_zone: str) -> Catalog:
    zone = load_zone(spec.timezone or default_zone)
    dunning = spec.dunning.policy()
    plans = tuple(_to_plan(plan, zone, dunning) for plan in spec.plans)
    notify = tuple(_to_channel(channel) for channel in spec.notify)
    return Catalog(zone, dunning, notify, plans, spec.reminders.reminders())


def _to_plan(spec: PlanSpec, zone: ZoneInfo, dunning: DunningPolicy) -> Plan:
    return Plan(
        id=spec.id,
        name=spec.name,
        amount=spec.amount,
        zone=load_zone(spec.timezone) if spec.timezone else zone,
        interval=parse_interval(spec.interval) if spec.interval else None,
        cron=spec.cron,
        trial_days=spec.trial_days,
        prorate_first=True if spec.prorate_first is None else spec.prorate_first,
        card_quota=spec.card_quota or None,
        dunning=spec.dunning.policy() if spec.dunning else dunning,
    )


def _to_channel(spec: LogChannel | WebhookChannel | EmailChannel) -> NotifyChannel:
    fields = spec.model_dump(by_alias=True, exclude={"type"}, exclude_defaults=True)
    return NotifyChannel(spec.type, tuple(sorted((k, str(v)) for k, v in fields.items())))
