"""Worker logging: the product's JSON lines (text on a terminal) with the stable ``action``
field, through the one redacting filter of ``billing.logs``.

Celery configures no logging of its own when a ``setup_logging`` receiver exists, so every
record of the worker (Celery's, kombu's, httpx's, ours) goes to our handler; the filter is
also put on any handler a library added itself. Imported by ``workers.app``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging

from billing.config import load_settings
from billing.logs import configure


@setup_logging.connect
def configure_worker_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **_: Any
) -> None:
    """``-l LEVEL`` is honoured; ``-f FILE`` writes the same lines to that file."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure(level=str(level or "INFO"), secrets=load_settings().log_secrets)
    if logfile:
        for handler in logging.getLogger().handlers:
            if getattr(handler, "_billing", False) and isinstance(handler, logging.StreamHandler):
                handler.setStream(open(logfile, "a", encoding="utf-8"))  # noqa: SIM115
