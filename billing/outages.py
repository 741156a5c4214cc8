"""Riding out an outage of the stores: a daemon that cannot reach PostgreSQL or Redis waits
and tries again with capped exponential backoff, logging each wait, and never exits.

A wrong value (a bad password, a database that does not exist) is not an outage: it is
raised at once as the one-line ConfigError that names the variable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from billing.db.engine import is_outage
from billing.errors import BrokerUnavailable, DatabaseUnavailable
from billing.logs import log

logger = logging.getLogger("billing.outages")
T = TypeVar("T")
FIRST_WAIT = 1.0  # seconds
LONGEST_WAIT = 30.0


class Stopped(Exception):
    """The process was told to stop while it waited."""


def wait_seconds(attempt: int) -> float:
    """1, 2, 4, ... seconds, never more than LONGEST_WAIT."""
    return min(LONGEST_WAIT, FIRST_WAIT * float(2 ** min(attempt, 16)))


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseUnavailable | BrokerUnavailable) or is_outage(exc)


def patiently(work: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
    """``work()``, tried again while its store is unavailable; raises ``Stopped`` if ``stop``
    is set while waiting, and any other error at once."""
    stop = stop or threading.Event()
    attempt = 0
    while True:
        try:
            return work()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            delay = wait_seconds(attempt)
            message = f"{what} unavailable, trying again in {delay:g} s"
            fields = {"store": what, "error": _why(exc), "retry_in": delay}
            log(logger, "store_unavailable", message, level=logging.WARNING, **fields)
        if stop.wait(delay):
            raise Stopped(what)
        attempt += 1


def _why(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(getattr(exc, "orig", None) or exc)
    lines = str(message).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
