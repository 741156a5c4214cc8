"""The error envelope ``{"error": {"code": "<snake_case>", "message": "<one line>"}}``.

Every refusal of the API passes here: the product's own errors by class (``STATUS_OF``),
FastAPI's validation errors (400 for a body that is no JSON, else 422 naming the field),
Starlette's 404/405, a database that cannot be reached (503), and anything unexpected
(500 ``internal_error``: logged with its traceback, never shown).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from billing.errors import (
    BillingError,
    CatalogError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    SchemaOutOfDate,
)
from billing.logs import redact
from billing.services.billing_keys import GatewayRefused, KeyNotFound
from billing.services.first_payment import FirstPaymentDeclined, FirstPaymentNotSent

logger = logging.getLogger("billing.api")

STATUS_OF: tuple[tuple[type[BillingError], int, str], ...] = (
    (KeyNotFound, 422, "billing_key_not_found"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_request"),
    (CatalogError, 422, "invalid_request"),
    (ConfigError, 503, "not_configured"),
    (SchemaOutOfDate, 503, "not_configured"),
    (GatewayRefused, 502, "portone_error"),
    (FirstPaymentDeclined, 422, "card_declined"),
    (FirstPaymentNotSent, 503, "portone_unavailable"),
    (BillingError, 409, "conflict"),
)
HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


class ApiError(Exception):
    """A refusal decided by the HTTP layer (auth, idempotency, a field the CLI lacks)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, *, scrub: bool = True) -> JSONResponse:
    """The envelope; ``scrub`` masks anything shaped like a secret or a card number (off for
    pydantic's messages, which never carry input, and whose bounds look like card numbers)."""
    line = " ".join((redact(message) if scrub else message).split())
    return JSONResponse({"error": {"code": code, "message": line}}, status_code=status)


def billing_error_response(exc: BillingError) -> JSONResponse:
    status, code = next((s, c) for kind, s, c in STATUS_OF if isinstance(exc, kind))
    message = exc.message
    if status == 422:  # the services name CLI options: name the JSON field instead
        message = _OPTION.sub(lambda m: m.group(1).replace("-", "_"), message)
    return error_response(status, code, message)


def validation_message(errors: Sequence[Any]) -> str:
    first = errors[0]
    location = [str(part) for part in first.get("loc", ())]
    if location and location[0] in ("body", "query", "path", "header"):
        location = location[1:] or [location[0]]
    field = ".".join(location) or "body"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {message[:1].lower()}{message[1:]}{more}"


async def _validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, "malformed_request", "the body is not valid JSON")
    return error_response(422, "invalid_request", validation_message(errors), scrub=False)


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _billing_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BillingError)
    return billing_error_response(exc)


async def _http(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _database(_request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", exc, extra={"action": "api_database_error"})
    return error_response(503, "database_unavailable", "the database cannot be reached")


async def _unstorable(_request: Request, exc: Exception) -> Response:
    """A value PostgreSQL refused (out of range, not storable): the request's fault."""
    logger.warning(
        "value refused by the database: %s", type(exc).__name__, extra={"action": "api_data_error"}
    )
    return error_response(422, "invalid_request", "a value is out of range or not storable")


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.error(
        "internal error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"action": "api_internal_error"},
    )
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _validation)
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(BillingError, _billing_error)
    api.add_exception_handler(HTTPException, _http)
    api.add_exception_handler(OperationalError, _database)
    api.add_exception_handler(DataError, _unstorable)
    api.add_exception_handler(Exception, _unexpected)
