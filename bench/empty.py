"""Celery's own ceiling: empty tasks through the same broker and settings as the product."""

from __future__ import annotations

import os

import redis
from celery import Celery

from billing.broker import celery_config
from billing.config import load_settings

app = Celery("bench-empty", set_as_current=False)
app.conf.update(celery_config(load_settings()))
app.conf.task_default_queue = "bench-empty"


@app.task(name="bench.empty")
def empty() -> None:
    """Nothing at all."""


@app.task(name="bench.done")
def done() -> None:
    """The last task: tells the benchmark that the queue ran dry."""
    redis.Redis.from_url(os.environ["BILLING_BROKER_URL"]).set("bench:empty:done", "1")
