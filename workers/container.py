"""Per-process dependencies of the worker, built on first use after any fork.

The database pool and the HTTP pool follow the worker's concurrency (``-c N``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_shutdown

from billing.bootstrap import App, build_app, make_gateway
from billing.config import load_settings
from billing.notify import Sender
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.services.pipeline import Pipeline
from billing.services.plan_cache import PlanCache
from workers.config import CALLS_PER_THREAD, DEFAULT_CONCURRENCY
from workers.publisher import CeleryPublisher


@dataclass
class Container:
    app: App
    gateway: PortOneClient
    pipeline: Pipeline
    sender: Sender

    def close(self) -> None:
        self.pipeline.calls.shutdown(wait=False)
        self.gateway.close()
        self.sender.http.close()
        self.app.close()


class _Slot:
    """This process's container, built on first use; forked children start empty."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.built: Container | None = None
        self.concurrency = DEFAULT_CONCURRENCY


_slot = _Slot()


def build_container(celery: Celery, concurrency: int, portone_url: str | None = None) -> Container:
    """The worker's dependencies: a database pool of ``concurrency`` connections (one per
    task thread), and a call pool and HTTP pool of ``concurrency * CALLS_PER_THREAD``."""
    settings = load_settings()
    app = build_app(settings, pool_size=concurrency)
    calls = concurrency * CALLS_PER_THREAD
    gateway = make_gateway(settings, connections=calls, url=portone_url)
    pool = ThreadPoolExecutor(max_workers=calls, thread_name_prefix="portone")
    pipeline = Pipeline(
        app, PortOneGateway(gateway), CeleryPublisher(celery), PlanCache(), calls=pool
    )
    return Container(app, gateway, pipeline, make_sender(concurrency))


def make_sender(concurrency: int) -> Sender:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return Sender(httpx.Client(limits=limits, timeout=10.0))


def container() -> Container:
    with _slot.lock:
        if _slot.built is None:
            from workers.app import app as celery

            _slot.built = build_container(celery, _slot.concurrency)
        return _slot.built


def install(built: Container) -> None:
    """Use ``built`` in this process (``billing run`` and the demo bring their own)."""
    with _slot.lock:
        _slot.built = built


def reset() -> None:
    with _slot.lock:
        if _slot.built is not None:
            _slot.built.close()
        _slot.built = None


@worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    _slot.concurrency = int(getattr(sender, "concurrency", None) or DEFAULT_CONCURRENCY)


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    _slot.lock = threading.Lock()
    _slot.built = None  # never reuse the parent's pooled connections in a forked child


@worker_shutdown.connect
def _close(**_: Any) -> None:
    reset()
