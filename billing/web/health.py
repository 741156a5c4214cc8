"""``GET /healthz`` (the process answers; no I/O) and ``GET /readyz`` (database and broker).

Anyone gets readiness as a status and an HTTP code; only those ``billing.web.access`` lets
read the figures get the details (they name internal hosts and ports).

Readiness runs both checks at once and gives them ``CHECK_SECONDS`` together; a check that
has not answered by then counts as down. The body names each dependency and why it is down.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from kombu.connection import Connection
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing import preflight
from billing.config import Settings
from billing.logs import redact
from billing.web.context import WebContext

CHECK_SECONDS = 2.0
OK = "ok"


def routes(context: WebContext) -> list[Route]:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    def readyz(request: Request) -> JSONResponse:  # sync: Starlette runs it on a thread
        checks = readiness(context)
        ready = all(state == OK for state in checks.values())
        details = checks if context.insight.allows(request) else {}
        body = {"status": "ready" if ready else "not ready", **details}
        return JSONResponse(body, status_code=200 if ready else 503)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def readiness(context: WebContext) -> dict[str, str]:
    """``{"database": ..., "broker": ..., "configuration": ...}``, each "ok" or why not."""
    url = context.settings.broker_url
    futures = {
        "database": context.checks.submit(database_check, context),
        "broker": context.checks.submit(broker_check, url, CHECK_SECONDS),
        "configuration": context.checks.submit(configuration_check, context.settings),
    }
    return {name: _outcome(future) for name, future in futures.items()}


def _outcome(future: Future[str]) -> str:
    try:
        return future.result(timeout=CHECK_SECONDS)
    except FutureTimeout:
        return f"no answer within {CHECK_SECONDS:g} s"


def configuration_check(settings: Settings) -> str:
    """What ``billing serve`` checked at start, again (the catalog file may have changed)."""
    found = preflight.problems(settings, preflight.Role.WEB)
    return "; ".join(found) if found else OK


def database_check(context: WebContext) -> str:
    if context.schema is not None and context.schema.problem is not None:
        return f"down: {context.schema.problem}"
    try:
        with context.app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return _why(exc)
    return OK


def broker_check(url: str | None, timeout: float) -> str:
    """Connects to the broker (Redis answers a PING). Without BILLING_BROKER_URL the broker
    is the in-process one of ``billing run``, which this process does not need."""
    if url is None:
        return OK
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        broker = Connection(url, connect_timeout=timeout, transport_options=options)  # type: ignore[no-untyped-call]
        with broker as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:
        return _why(exc)
    return OK


def _why(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(f"down: {lines[0] if lines else type(exc).__name__}")
