"""The web process's ASGI application, made by ``create_app`` from Settings.

Routes: ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``POST /portone/webhook``, the
merchant's HTTP API mounted at ``/v1`` (``billing.api``), and the operator console at ``/ops``
(``billing.web.ops``) when BILLING_OPS_AUTH is set. The app owns one WebContext
(database pool, PortOne client, verification threads) and the API's context, opened when it
is made and closed when the server shuts down (the ASGI lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount

from billing.api import create_api
from billing.api.context import build_api_context
from billing.api.errors import error_response
from billing.config import Settings
from billing.web import health, metrics, webhook
from billing.web.access import load_insight_access
from billing.web.config import WebConfig
from billing.web.context import WebContext, build_context
from billing.web.ops import OpsAuth, console_routes, load_ops_auth
from billing.web.ops.links import FlowerLinks, load_flower_links


def create_app(
    settings: Settings, config: WebConfig | None = None, environ: Mapping[str, str] | None = None
) -> Starlette:
    """Builds the context now (a bad database is an error here, not on the first request).

    ``environ`` (default ``os.environ``) gives BILLING_OPS_AUTH, the console's credentials,
    and BILLING_FLOWER_URL, its links to Flower, checked before anything is built, and
    BILLING_METRICS_TOKEN (``billing.web.access``)."""
    ops = load_ops_auth(environ)
    flower = load_flower_links(environ)
    insight = load_insight_access(environ)
    context = build_context(settings, config or WebConfig())
    context.insight = insight
    return app_for(context, ops, flower)


def app_for(
    context: WebContext, ops: OpsAuth | None = None, flower: FlowerLinks | None = None
) -> Starlette:
    api = build_api_context(context.settings, context.app)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if context.verifier is not None:
            context.verifier.warm_up()
        try:
            yield
        finally:
            api.close()
            context.close()

    routes: list[BaseRoute] = [*health.routes(context), *metrics.routes(context)]
    routes += [*webhook.routes(context), Mount("/v1", app=create_api(api))]
    routes += console_routes(context, api, ops, flower or FlowerLinks())
    web = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: _not_found})
    web.state.context = context
    return web


async def _not_found(request: Request, exc: Exception) -> Response:
    """Under /v1 in the API's envelope, even for a path the mount cannot match (a newline)."""
    if request.url.path.startswith("/v1"):
        return error_response(404, "not_found", "Not Found")
    return PlainTextResponse("Not Found", status_code=404)
