"""Structured logs with a stable ``action`` field, and one filter that redacts secrets.

Every log record of the process passes the one ``Redactor`` that ``configure`` installs:
access tokens, ``Authorization`` headers, the API's keys (``bk_...``), imp_secret and the
other configured secrets, card numbers and card fields (``pwd_2digit``, ``birth``,
``expiry``) are replaced before any handler formats them, whoever logged them (a run of 13-19
digits only when it passes the Luhn check, as every card number does: task ids and timestamps
stay). The filter sits on every handler that exists when ``configure`` runs (ours, Celery's,
a library's own), and the log-record factory redacts the message, arguments and traceback of
records that reach a handler added later.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"
_KEYS = r"imp_secret|access_token|authorization|pwd_2digit|birth|card_number|expiry|password"
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        rf"(?i)((?:{_KEYS})[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)[^\"',\s}}&]+"
    ),
    # the API keys of /v1 (billing.services.api_keys), wherever they appear: a URL, a body
    re.compile(r"(?<![A-Za-z0-9_-])bk_[A-Za-z0-9_-]{8,}"),
)
# what may be a card number, dashed, spaced or not (not the digits of a fraction:
# 0.18396951100021397); only a run that passes the Luhn check is one
_DIGIT_RUN = re.compile(r"(?<![0-9.])[0-9](?:[ -]?[0-9]){12,18}(?![0-9]|\.[0-9])")
SENSITIVE_FIELDS = frozenset(
    {
        "access_token",
        "token",
        "imp_secret",
        "secret",
        "password",
        "authorization",
        "pwd_2digit",
        "birth",
        "card_number",
        "expiry",
    }
)
_RECORD_ATTRIBUTES = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
)
_DONE = "_billing_redacted"  # set on a record whose message, args and traceback are done


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            for spelling in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
                text = text.replace(spelling, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return _DIGIT_RUN.sub(_card_number, text)


def _card_number(match: re.Match[str]) -> str:
    digits = [int(c) for c in match.group() if c.isdigit()]
    return REDACTED if luhn_valid(digits) else match.group()


def luhn_valid(digits: list[int]) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


class Redactor(logging.Filter):
    """Rewrites a record's message, arguments, traceback, stack and extra fields in place
    (so every handler after it sees the redacted record); never drops a record."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, _DONE, False):
            self.redact_text(record)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES and key != _DONE:
                setattr(record, key, self.redact_value(key, value))
        return True

    def redact_text(self, record: logging.LogRecord) -> None:
        """Message with its arguments, traceback and stack: everything a formatter prints."""
        record.msg = redact(_message(record), self.secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        setattr(record, _DONE, True)

    def redact_value(self, key: str, value: Any) -> Any:
        """A structured field: sensitive names hidden whole, text and numbers scanned."""
        if key.lower() in SENSITIVE_FIELDS and value is not None:
            return REDACTED
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, Mapping):
            return {k: self.redact_value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value("", item) for item in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return value if redact(str(value)) == str(value) else REDACTED
        return value


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # arguments that do not fit the format: keep both, never raise
        return f"{record.msg} {record.args!r}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "action": getattr(record, "action", None) or record.name,  # a library's: its logger
            "message": record.getMessage(),
            **(getattr(record, "fields", None) or {}),
        }
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        action = getattr(record, "action", None)
        head = f"{record.levelname.lower():<7} {action or record.name}"
        line = f"{head} {record.getMessage()} {pairs}".rstrip()
        return f"{line}\n{record.exc_text}" if record.exc_text else line


_REDACTOR = Redactor()  # the one filter of this process; configure() sets its secrets


QUIET_LIBRARIES = ("httpx", "httpcore")


def configure(
    level: str = "INFO", json_lines: bool | None = None, secrets: tuple[str, ...] = ()
) -> None:
    """Set up the root logger once per process: JSON when not on a terminal.

    Calling it again replaces our handler and the secrets; the filter stays the same one.
    """
    _REDACTOR.secrets = tuple(secret for secret in secrets if secret)
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_billing", False):
            root.removeHandler(old)
    handler._billing = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in QUIET_LIBRARIES:  # one line per HTTP request is the caller's job
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    _guard_every_handler(_REDACTOR)
    _guard_new_records(_REDACTOR)


def _guard_every_handler(redactor: Redactor) -> None:
    """The filter on every handler of every logger that exists now, ours or not."""
    known = list(logging.Logger.manager.loggerDict.values())
    loggers = [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)


def _guard_new_records(redactor: Redactor) -> None:
    """Message, arguments and traceback redacted as each record is made, for handlers added
    after configure() (their extra fields are only redacted by handlers that have the filter)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_billing", False):
        return
    logging.setLogRecordFactory(_redacting_factory(current, redactor))


def _redacting_factory(
    make: Callable[..., logging.LogRecord], redactor: Redactor
) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redactor.redact_text(record)
        return record

    factory._billing = True  # type: ignore[attr-defined]
    return factory


def log(
    logger: logging.Logger, action: str, message: str = "", level: int = logging.INFO, **fields: Any
) -> None:
    """Log one event with a stable ``action`` and structured fields."""
    logger.log(level, message or action, extra={"action": action, "fields": fields})
