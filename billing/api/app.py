"""The FastAPI application of ``/v1``, made by ``create_api`` for one ApiContext.

OpenAPI 3.1 at ``/v1/openapi.json``, readable docs at ``/v1/docs``. FastAPI sits on the
Starlette/uvicorn stack ``billing serve`` already runs, and turns the pydantic models of
``billing.api.models`` into the OpenAPI document and the request validation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from billing import __version__
from billing.api import errors
from billing.api.bodies import RequestGuard
from billing.api.context import ApiContext
from billing.api.examples import add_examples
from billing.api.routes import charges, checkout, customers, plans, subscriptions, test_clock

DESCRIPTION = """The merchant's HTTP API of the recurring billing engine (PortOne V1 billing
keys). Authenticate with `Authorization: Bearer <key>` (`billing api-keys create`). Every POST
accepts `Idempotency-Key`. Errors are `{"error": {"code", "message"}}`; lists are
`{"data": [...], "has_more": bool}`, newest first, paged by `limit` and `starting_after`."""


def create_api(context: ApiContext) -> FastAPI:
    api = FastAPI(
        title="billing",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.api = context
    api.add_middleware(RequestGuard)
    errors.install(api)
    for module in (plans, customers, checkout, subscriptions, charges, test_clock):
        api.include_router(module.router())
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        return add_examples(generate())  # generated once and cached by FastAPI

    api.openapi = openapi  # type: ignore[method-assign]
    return api
