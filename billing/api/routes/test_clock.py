"""``POST /v1/test-clock``: set or advance the shared test clock (sandbox mode only; 404
otherwise), so that a merchant's own integration tests can move time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Response

from billing.api.errors import ApiError
from billing.api.idempotency import Answer, PostWrite
from billing.api.models import ClockIn, ClockNow
from billing.api.routes import errors
from billing.domain.times import format_time, parse_time
from billing.errors import InvalidInput
from billing.services.clock_control import forward, sandbox_clock


def move(body: ClockIn, write: PostWrite) -> Response:
    """``{"now": TIME}`` sets the clock; ``{"advance": "3d"}`` moves it forward."""
    context = write.context
    if not context.settings.sandbox_mode:
        raise ApiError(404, "not_found", "there is no test clock: sandbox mode only")

    def produce() -> Answer:
        clock = sandbox_clock(context.settings, context.app.clocks.billing)
        if (body.now is None) == (body.advance is None):
            raise InvalidInput("now, advance: give exactly one of them")
        if body.now is not None:
            moment = clock.set(_time(body.now, context.zone))
        else:
            moment = clock.set(forward(clock.now(), body.advance or "", context.zone, "advance"))
        return Answer(200, ClockNow(now=format_time(moment, context.zone) or ""))

    return write.run(produce)


def _time(text: str, zone: ZoneInfo) -> datetime:
    try:
        return parse_time(text, zone)
    except ValueError as exc:
        raise InvalidInput(f"now: {exc}") from None


def router() -> APIRouter:
    routes = APIRouter(tags=["sandbox"])
    routes.add_api_route(
        "/test-clock",
        move,
        methods=["POST"],
        response_model=ClockNow,
        responses=errors(400, 403, 404, 409),
    )
    return routes
