"""``Authorization: Bearer <key>``: 401 without a live key, 403 for a read-only key writing.

Nothing of a presented key is logged: a refusal logs only why and from where.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing.api.context import ApiContext
from billing.api.errors import ApiError
from billing.logs import log
from billing.services.api_keys import Principal, authenticate

logger = logging.getLogger("billing.api")
bearer = HTTPBearer(auto_error=False, description="An API key from `billing api-keys create`.")


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


Context = Annotated[ApiContext, Depends(api_context)]


def caller(
    request: Request,
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The key's principal; 401 when the key is missing, unknown or revoked."""
    if credentials is None:
        _refused(request, "no bearer key")
        raise ApiError(
            401, "unauthorized", "send an API key in the Authorization header, scheme Bearer"
        )
    with context.app.transaction() as session:
        principal = authenticate(session, credentials.credentials, context.app.clocks.system.now())
    if principal is None:
        _refused(request, "unknown or revoked key")
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
    return principal


def writer(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """The principal of a request that changes something; 403 for a read-only key."""
    if principal.read_only:
        raise ApiError(403, "forbidden", f"API key {principal.name!r} is read-only")
    return principal


Reader = Annotated[Principal, Depends(caller)]
Writer = Annotated[Principal, Depends(writer)]


def _refused(request: Request, why: str) -> None:
    host = request.client.host if request.client else None
    log(
        logger,
        "api_auth_refused",
        why,
        level=logging.WARNING,
        client=host,
        method=request.method,
        path=request.url.path,
    )
