"""Everything one web process owns, built from Settings by ``build_context`` (never at import).

One App (engine and pool), one PortOne client with a short timeout for re-fetching webhooks,
a few threads that verify webhooks, a few that run readiness checks, and the process's own
counters.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from billing.app import App, build_app, prepare_schema
from billing.bootstrap import make_gateway
from billing.config import Settings
from billing.errors import BillingError, ConfigError, DatabaseUnavailable
from billing.logs import log
from billing.outages import Stopped, patiently
from billing.portone.client import PortOneClient
from billing.services.catalog_cache import CatalogCache
from billing.services.metrics import MonthlyRates
from billing.services.portone_webhook import WebhookHandler
from billing.services.webhook_guard import RateLimit, WebhookGuard
from billing.web.access import InsightAccess
from billing.web.config import WebConfig
from billing.web.verifier import Verifier

logger = logging.getLogger("billing.web")
API_CONNECTIONS = 16  # requests of the HTTP API (/v1) using the database at once


@dataclass
class WebContext:
    settings: Settings
    config: WebConfig
    app: App
    gateway: PortOneClient | None
    verifier: Verifier | None  # None: no PortOne to ask (``portone_error`` says why)
    portone_error: str | None = None
    rates: MonthlyRates = field(default_factory=MonthlyRates)
    insight: InsightAccess = field(default_factory=InsightAccess)  # /metrics, /readyz details
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="readyz")
    )
    webhook_counter: Counter = field(init=False)
    sources: RateLimit = field(init=False)  # webhooks per source address
    schema: SchemaWatch | None = None  # set while the database was unreachable at start

    def __post_init__(self) -> None:
        per_source = self.config.webhook_limits.per_source
        self.sources = RateLimit(per_source, 2 * per_source)
        self.webhook_counter = Counter(
            "billing_webhook_notices",
            "PortOne notices received by this web process, by verdict",
            ["verdict"],
            registry=self.registry,
        )

    def close(self) -> None:
        if self.schema is not None:
            self.schema.stop.set()
        if self.verifier is not None:
            self.verifier.close()
        self.checks.shutdown(wait=False, cancel_futures=True)
        if self.gateway is not None:
            self.gateway.close()
        self.app.close()


@dataclass
class SchemaWatch:
    """The schema check of a web process that started while the database was unreachable:
    tried again in the background (``/readyz`` answers 503 meanwhile)."""

    stop: threading.Event = field(default_factory=threading.Event)
    problem: str | None = None  # a schema that turned out wrong: /readyz says so

    def start(self, app: App) -> None:
        threading.Thread(target=self._check, args=(app,), name="schema", daemon=True).start()

    def _check(self, app: App) -> None:
        try:
            patiently(lambda: prepare_schema(app.engine), "database", self.stop)
        except Stopped:
            return
        except BillingError as exc:
            self.problem = exc.message
            log(logger, "schema_refused", exc.message, level=logging.ERROR)


def open_database(settings: Settings, pool_size: int) -> tuple[App, SchemaWatch | None]:
    """The App; a database that cannot be reached yet is waited for in the background,
    while a wrong BILLING_DATABASE_URL or an old schema is an error now."""
    app = build_app(settings, pool_size=pool_size, check_schema=False)
    try:
        prepare_schema(app.engine)
    except DatabaseUnavailable as exc:
        log(logger, "store_unavailable", exc.message, level=logging.WARNING, store="database")
        watch = SchemaWatch()
        watch.start(app)
        return app, watch
    except BaseException:
        app.close()
        raise
    return app, None


def build_context(settings: Settings, config: WebConfig) -> WebContext:
    """Opens the database pool (schema checked, as every command does; an unreachable
    database is waited for) and builds the PortOne client; without a PortOne to ask, the
    webhook answers 503 and says why."""
    app, schema = open_database(settings, config.verifiers + 4 + API_CONNECTIONS)
    try:
        timeout = min(config.portone_timeout, settings.portone_timeout)
        short = settings.model_copy(update={"portone_timeout": timeout})
        gateway = make_gateway(short, connections=config.verifiers)
    except ConfigError as exc:
        reason = f"PortOne notices cannot be verified: {exc.message}"
        return WebContext(settings, config, app, None, None, reason, schema=schema)
    guard = WebhookGuard.from_limits(config.webhook_limits)
    sandbox = settings.sandbox_mode
    handler = WebhookHandler(app, gateway, CatalogCache(), include_sandbox=sandbox, guard=guard)
    verifier = Verifier(
        handler,
        workers=config.verifiers,
        backlog=config.backlog,
        answer_within=config.answer_within,
    )
    return WebContext(settings, config, app, gateway, verifier, schema=schema)
