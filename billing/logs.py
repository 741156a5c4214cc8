"""Structured logs with a stable ``action`` field, and one filter that redacts secrets.

Every log record passes ``Redactor``: access tokens, imp_secret values, card numbers and
``Authorization`` headers are replaced before any handler sees them, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:imp_secret|access_token|authorization|pwd_2digit|birth)[\"']?\s*[:=]\s*[\"']?)[^\"',\s}]+"
    ),
    re.compile(r"(?<![0-9])(?:[0-9][ -]?){13,19}(?![0-9])"),  # card numbers, dashed or not
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


class Redactor(logging.Filter):
    """Rewrites every record's message and fields; registered on every handler."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: _redact_value(v, self.secrets) for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        return True


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    return redact(value, secrets) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "action": getattr(record, "action", None),
            "message": record.getMessage(),
            **(getattr(record, "fields", None) or {}),
        }
        if record.exc_text:
            document["exception"] = record.exc_text
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        action = getattr(record, "action", None)
        head = f"{record.levelname.lower():<7} {action or record.name}"
        line = f"{head} {record.getMessage()} {pairs}".rstrip()
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def configure(
    level: str = "INFO", json_lines: bool | None = None, secrets: tuple[str, ...] = ()
) -> None:
    """Set up the root logger once per process: JSON when not on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_billing", False):
            root.removeHandler(old)
    handler._billing = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def log(
    logger: logging.Logger, action: str, message: str = "", level: int = logging.INFO, **fields: Any
) -> None:
    """Log one event with a stable ``action`` and structured fields."""
    logger.log(level, message or action, extra={"action": action, "fields": fields})
