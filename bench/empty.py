"""Celery's own ceiling: empty tasks through the broker of the runs, with two configurations.

``app`` (``celery -A bench.empty``): the product's own settings (``billing.broker``: task
events on, soft and hard time limits, ...). ``plain`` (``celery -A bench.empty:plain``):
Celery as it comes, with only what money needs at the least (``acks_late``, prefetch 1) and
no task events: what a user compares the product with.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

from billing.broker import celery_config
from billing.config import load_settings

QUEUE = "bench-empty"
DONE_KEY = "bench:empty:done"


def _tasks(celery: Celery) -> None:
    @celery.task(name="bench.empty")
    def empty() -> None:
        """Nothing at all."""

    @celery.task(name="bench.done")
    def done() -> None:
        """The last task: tells the benchmark that the queue ran dry."""
        redis.Redis.from_url(os.environ["BILLING_BROKER_URL"]).set(DONE_KEY, "1")


def product_app() -> Celery:
    celery = Celery("bench-empty", set_as_current=False)
    celery.conf.update(celery_config(load_settings()))
    celery.conf.task_default_queue = QUEUE
    _tasks(celery)
    return celery


def plain_app() -> Celery:
    celery = Celery("bench-plain", set_as_current=False)
    celery.conf.update(
        broker_url=os.environ.get("BILLING_BROKER_URL", "redis://127.0.0.1:6379/0"),
        task_default_queue=QUEUE,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        task_send_sent_event=False,
        task_ignore_result=True,
    )
    _tasks(celery)
    return celery


app = product_app()
plain = plain_app()
