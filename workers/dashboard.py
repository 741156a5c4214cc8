"""Flower, however it is started from this app (``celery -A workers flower``, the Procfile,
compose): it never starts open, listens on 127.0.0.1 unless told otherwise, and logs the
product's JSON lines.

``celery`` loads Flower's command (an entry point) before it loads ``-A workers``; the app
then swaps the ``Flower`` class that command instantiates for ``GuardedFlower``, which checks
the options Flower has parsed by then (environment, ``--conf`` file, command line) before
anything listens. A worker process loads the same command module and never builds a Flower.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from billing.errors import BillingError

FLOWER_COMMAND = "flower.command"
LOOPBACK = "127.0.0.1"
OPEN = (
    "FLOWER_BASIC_AUTH: Flower never starts open: set FLOWER_BASIC_AUTH=user:password (both "
    "non-empty), or Flower's OAuth (FLOWER_AUTH, FLOWER_AUTH_PROVIDER, FLOWER_OAUTH2_KEY and "
    "FLOWER_OAUTH2_SECRET)"
)


def auth_problem(options: Any) -> str | None:
    """None when Flower asks every visitor to log in: basic auth with a non-empty user and
    password in every entry, or OAuth with its provider, key and secret."""
    entries = [entry for entry in (options.basic_auth or []) if entry is not None]
    if entries:
        if all(_user_and_password(entry) for entry in entries):
            return None
        return "FLOWER_BASIC_AUTH: must be user:password, both non-empty"
    return None if _oauth(options) else OPEN


def _user_and_password(entry: str) -> bool:
    user, _, password = entry.partition(":")
    return bool(user.strip()) and bool(password.strip())


def _oauth(options: Any) -> bool:
    key = options.oauth2_key or os.environ.get("FLOWER_OAUTH2_KEY")
    secret = options.oauth2_secret or os.environ.get("FLOWER_OAUTH2_SECRET")
    return bool(options.auth and options.auth_provider and key and secret)


def guard(options: Any) -> None:
    """Refuse an open Flower (one line, exit 1); bind loopback unless an address was given."""
    problem = auth_problem(options)
    if problem is not None:
        refuse(problem)
    if not options.address and not options.unix_socket:
        options.address = LOOPBACK


def refuse(message: str) -> None:
    print(f"billing: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def json_logging() -> None:
    """Our JSON handler instead of the text one Tornado put on the root logger."""
    from tornado.log import LogFormatter

    from billing.config import load_settings
    from billing.logs import configure

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler.formatter, LogFormatter):
            root.removeHandler(handler)
    level = logging.getLevelName(root.level) if root.level else "INFO"
    configure(level=str(level), secrets=load_settings().log_secrets)


def install() -> None:
    """Swap Flower's class in its command, if this process runs ``celery ... flower``."""
    command = sys.modules.get(FLOWER_COMMAND)
    if command is None or getattr(command.Flower, "_billing_guarded", False):
        return
    original = command.Flower

    class GuardedFlower(original):  # type: ignore[misc, valid-type]
        _billing_guarded = True

        def __init__(self, options: Any = None, **kwargs: Any) -> None:
            guard(options)
            try:
                json_logging()
            except BillingError as exc:  # a bad BILLING_* value: one line, as everywhere
                refuse(exc.message)
            super().__init__(options=options, **kwargs)

    setattr(command, "Flower", GuardedFlower)  # noqa: B010 (a module attribute mypy cannot see)
