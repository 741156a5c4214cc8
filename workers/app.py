"""The Celery application. Creating it connects to nothing; settings are read on first use."""

from __future__ import annotations

from typing import Any

from celery import Celery

import workers.logging_setup  # noqa: F401 (setup_logging signal: JSON lines, one redacting filter)
from billing.config import load_settings
from workers.compat import survive_redis_restarts
from workers.config import celery_config


def create_app() -> Celery:
    survive_redis_restarts()
    tasks = ["workers.tasks", "workers.refund_tasks"]
    celery = Celery("billing", include=tasks, set_as_current=False)
    celery.on_configure.connect(_configure, weak=False)
    return celery


def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(load_settings()))


app = create_app()
