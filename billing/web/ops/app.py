"""The console as an ASGI application, mounted at ``/ops`` by ``billing.web.app``."""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from billing.api.context import ApiContext
from billing.web.context import WebContext
from billing.web.ops import actions, pages
from billing.web.ops.auth import Guard, OpsAuth
from billing.web.ops.console import Console, make_templates
from billing.web.ops.csrf import CsrfTokens
from billing.web.ops.links import FlowerLinks

PREFIX = "/ops"


def console_routes(
    context: WebContext, api: ApiContext, auth: OpsAuth | None, flower: FlowerLinks
) -> list[BaseRoute]:
    """``[Mount("/ops", ...)]`` with credentials (BILLING_OPS_AUTH), else nothing (404)."""
    if auth is None:
        return []
    return [Mount(PREFIX, app=console_app(context, api, auth, flower))]


def console_app(
    context: WebContext, api: ApiContext, auth: OpsAuth, flower: FlowerLinks | None = None
) -> Starlette:
    links = flower or FlowerLinks()
    console = Console(context, api, auth, CsrfTokens(auth), make_templates(), links)
    stylesheet = resources.files("billing.web.ops").joinpath("static/ops.css").read_text()

    def css(_request: Request) -> Response:
        return Response(stylesheet, media_type="text/css")

    routes: list[BaseRoute] = [Route("/static/ops.css", css, methods=["GET"])]
    routes += [*pages.routes(console), *actions.routes(console)]

    async def not_found(request: Request, _exc: Exception) -> Response:
        return console.error(request, 404, f"nothing at {request.url.path}")

    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, auth=auth)],
        exception_handlers={404: not_found},
    )
