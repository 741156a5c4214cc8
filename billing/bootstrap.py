"""The composition root: every process (CLI, scheduler, worker, web, the embedded
``billing run`` and the demo) builds its parts here, from Settings. Nothing runs at import,
and nothing below this module imports it: the services receive what they use.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import redis
from celery import Celery

from billing.app import App, build_app
from billing.broker import CALLS_PER_THREAD, CeleryPublisher
from billing.config import DEFAULT_PORTONE_URL, SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, Settings
from billing.db.capacity import Capacity, measure_engine
from billing.errors import ConfigError
from billing.logs import log
from billing.notify import Sender
from billing.portone.client import PortOneClient
from billing.portone.gateway import PortOneGateway
from billing.portone.ratelimit import RateLimit, RedisBucket
from billing.preflight import charging_problem
from billing.services.catalog_cache import CatalogCache
from billing.services.pipeline import Pipeline
from billing.services.ports import Publisher
from billing.services.scheduling import Scheduler

logger = logging.getLogger("billing.worker")


def make_gateway(settings: Settings, connections: int, url: str | None = None) -> PortOneClient:
    """The PortOne client, or a one-line refusal when charging is not allowed.

    Real money needs credentials and no sandbox mode. Sandbox mode never reaches
    api.iamport.kr: it charges BILLING_PORTONE_URL, or ``url`` (the bundled sandbox of
    ``billing run`` and ``billing demo``).
    """
    target = url or settings.portone_url
    key = settings.imp_key.get_secret_value() if settings.imp_key else None
    secret = settings.imp_secret.get_secret_value() if settings.imp_secret else None
    problem = charging_problem(settings, url)
    if problem is not None:
        raise ConfigError(problem)
    if settings.sandbox_mode:
        key, secret = key or SANDBOX_IMP_KEY, secret or SANDBOX_IMP_SECRET
    assert key is not None and secret is not None  # charging_problem checked them
    return PortOneClient(
        target or DEFAULT_PORTONE_URL,
        key,
        secret,
        timeout=settings.portone_timeout,
        max_connections=connections,
        limit=rate_limit(settings),
    )


def rate_limit(settings: Settings) -> RateLimit | None:
    """BILLING_PORTONE_MAX_RPS, shared by every process through the broker's Redis."""
    if settings.portone_max_rps is None:
        return None
    url = settings.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        raise ConfigError(
            "BILLING_PORTONE_MAX_RPS: the ceiling is shared through Redis: it needs a "
            "redis:// BILLING_BROKER_URL"
        )
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return RedisBucket(client, settings.portone_max_rps)


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


def make_sender(concurrency: int) -> Sender:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return Sender(httpx.Client(limits=limits, timeout=10.0))


def worker_parts(
    settings: Settings, publisher: Publisher, concurrency: int, portone_url: str | None = None
) -> Container:
    """The worker's dependencies: a database pool of ``concurrency`` connections (one per
    task thread), and a call pool and HTTP pool of ``concurrency * CALLS_PER_THREAD``."""
    app = build_app(settings, pool_size=concurrency)
    warn_about_capacity(app)
    calls = concurrency * CALLS_PER_THREAD
    client = make_gateway(settings, connections=calls, url=portone_url)
    pool = ThreadPoolExecutor(max_workers=calls, thread_name_prefix="portone")
    pipeline = Pipeline(app, PortOneGateway(client), publisher, CatalogCache(), calls=pool)
    return Container(app, client, pipeline, make_sender(concurrency))


def warn_about_capacity(app: App) -> None:
    """A warning when every billing pool together could exhaust PostgreSQL's connections."""
    warn_if_short(measure_engine(app.engine))


def warn_if_short(capacity: Capacity | None) -> None:
    if capacity is not None and capacity.warning is not None:
        fields = {"max_connections": capacity.max_connections, "pools": capacity.pools}
        log(logger, "pool_capacity", capacity.warning, level=logging.WARNING, **fields)


def scheduler(app: App, celery: Celery, plans: CatalogCache | None = None) -> Scheduler:
    """The scheduler daemon's pass, publishing to ``celery``'s broker."""
    return Scheduler(app, CeleryPublisher(celery), plans)
