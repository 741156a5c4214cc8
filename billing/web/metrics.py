"""``GET /metrics``: the business figures, computed from the database on every scrape, in
Prometheus' text exposition format, followed by this process's own counters.

A scrape that cannot read the database answers 503, which Prometheus records as a failed
scrape (``up == 0``) rather than as figures of zero. Only for the clients
``billing.web.access`` allows (a token, or loopback): the figures are revenue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from billing.services.metrics import BusinessFigures, business_figures
from billing.web.context import WebContext

logger = logging.getLogger("billing.web")
STATEMENT_TIMEOUT_MS = 10_000  # a scrape never holds the database longer than this


def routes(context: WebContext) -> list[Route]:
    def metrics(request: Request) -> Response:  # sync: Starlette runs it on a thread
        if not context.insight.allows(request):
            return context.insight.refusal()
        try:
            figures = read_figures(context)
        except Exception as exc:
            logger.warning("metrics unavailable: %s", exc, extra={"action": "metrics_failed"})
            return PlainTextResponse("database unavailable\n", status_code=503)
        body = render(figures) + generate_latest(context.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]


def read_figures(context: WebContext) -> BusinessFigures:
    app = context.app
    now = app.clocks.billing.now()  # the billing clock, read before the transaction
    with app.transaction() as session:
        if app.engine.dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        return business_figures(session, now, app.clocks.system.now(), context.rates)


class FiguresCollector(Collector):
    def __init__(self, figures: BusinessFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self.figures
        yield _by_status("billing_charges", "Charges by status (every charge ever made)", f.charges)
        yield _by_status("billing_subscriptions", "Subscriptions by status", f.subscriptions)
        for name, help_text, value in (
            (
                "billing_due_unclaimed_subscriptions",
                "Subscriptions due at the billing clock and not yet claimed by a scheduler",
                f.due_unclaimed,
            ),
            (
                "billing_oldest_due_age_seconds",
                "Age of the oldest due work not yet sent"
                " (unclaimed subscription or pending charge)",
                f.oldest_due_age_seconds,
            ),
            (
                "billing_unknown_charges",
                "Charges whose outcome was not seen, being reconciled with PortOne",
                f.unknown_charges,
            ),
            (
                "billing_dunning_backlog_subscriptions",
                "Past-due subscriptions with a retry scheduled",
                f.dunning_backlog,
            ),
            (
                "billing_notices_pending",
                "Notices in the outbox waiting to be delivered",
                f.notices_pending,
            ),
            (
                "billing_set_aside_subscriptions",
                "Subscriptions the scheduler set aside (a plan that vanished, data no code "
                "expected): each needs a person; `billing status` shows why",
                f.set_aside,
            ),
            (
                "billing_duplicate_payments",
                "Second paid charges of one period (PortOne paid two attempts): refund them",
                f.duplicate_payments,
            ),
            (
                "billing_mrr_krw",
                "Monthly recurring revenue in KRW: active and past-due subscriptions at their "
                "plan's current amount, normalised to a month",
                f.mrr_krw,
            ),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)


def _by_status(name: str, help_text: str, counts: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["status"])
    for status, count in sorted(counts.items()):
        family.add_metric([status], count)
    return family


def render(figures: BusinessFigures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    return generate_latest(registry)
