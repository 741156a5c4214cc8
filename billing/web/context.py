"""Everything one web process owns, built from Settings by ``build_context`` (never at import).

One App (engine and pool), one PortOne client with a short timeout for re-fetching notices,
a few threads that verify notices, a few that run readiness checks, and the process's own
counters.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from billing.app import App, build_app
from billing.bootstrap import make_gateway
from billing.config import Settings
from billing.errors import ConfigError
from billing.portone.client import PortOneClient
from billing.services.metrics import MonthlyRates
from billing.services.notice_guard import NoticeGuard, RateLimit
from billing.services.plan_cache import PlanCache
from billing.services.portone_webhook import NoticeHandler
from billing.web.access import InsightAccess
from billing.web.config import WebConfig
from billing.web.verifier import Verifier

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
    notice_counter: Counter = field(init=False)
    sources: RateLimit = field(init=False)  # notices per source address

    def __post_init__(self) -> None:
        per_source = self.config.notices.per_source
        self.sources = RateLimit(per_source, 2 * per_source)
        self.notice_counter = Counter(
            "billing_webhook_notices",
            "PortOne notices received by this web process, by verdict",
            ["verdict"],
            registry=self.registry,
        )

    def close(self) -> None:
        if self.verifier is not None:
            self.verifier.close()
        self.checks.shutdown(wait=False, cancel_futures=True)
        if self.gateway is not None:
            self.gateway.close()
        self.app.close()


def build_context(settings: Settings, config: WebConfig) -> WebContext:
    """Connects to the database (schema checked, as every command does) and builds the
    PortOne client; without a PortOne to ask, the webhook answers 503 and says why."""
    app = build_app(settings, pool_size=config.verifiers + 4 + API_CONNECTIONS)
    try:
        timeout = min(config.portone_timeout, settings.portone_timeout)
        short = settings.model_copy(update={"portone_timeout": timeout})
        gateway = make_gateway(short, connections=config.verifiers)
    except ConfigError as exc:
        reason = f"PortOne notices cannot be verified: {exc.message}"
        return WebContext(settings, config, app, None, None, reason)
    guard = NoticeGuard.from_limits(config.notices)
    sandbox = settings.sandbox_mode
    handler = NoticeHandler(app, gateway, PlanCache(), include_sandbox=sandbox, guard=guard)
    verifier = Verifier(handler, workers=config.verifiers, backlog=config.backlog,
                        answer_within=config.answer_within)  # fmt: skip
    return WebContext(settings, config, app, gateway, verifier)
