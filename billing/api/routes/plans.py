"""``GET /v1/plans`` and ``GET /v1/plans/{plan_id}/preview``: the catalog and its next charges."""

from __future__ import annotations

import itertools
from typing import Annotated

from fastapi import APIRouter, Query

from billing.api.auth import Context, Reader
from billing.api.models import PlanList, PreviewList
from billing.api.routes import LIMIT_DEFAULT, Limit, errors
from billing.domain.calendar import periods
from billing.domain.times import parse_time
from billing.errors import InvalidInput
from billing.services import plan_store
from billing.views import plan_view, preview_view

PlanAfter = Annotated[str | None, Query(max_length=64, description="The last plan id shown.")]


def list_plans(
    context: Context,
    _caller: Reader,
    limit: Limit = LIMIT_DEFAULT,
    starting_after: PlanAfter = None,
) -> PlanList:
    """The plans of the loaded catalog, by id (a catalog has no "newest")."""
    app = context.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        plan_store.ensure_catalog(session, context.settings, now)
        plans = plan_store.current_plans(session)
    views = [plan_view(p) for p in plans if starting_after is None or p.id > starting_after]
    return PlanList.model_validate({"data": views[:limit], "has_more": len(views) > limit})


def preview(
    plan_id: str,
    context: Context,
    _caller: Reader,
    start: Annotated[str | None, Query(max_length=64, description="ISO 8601; default now")] = None,
    count: Annotated[int, Query(ge=1, le=1000)] = 12,
) -> PreviewList:
    """The first ``count`` charge times and amounts of a subscription starting at ``start``."""
    app = context.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        plan_store.ensure_catalog(session, context.settings, now)
        plan = plan_store.current_plan(session, plan_id)
    try:
        begin = parse_time(start, plan.zone) if start is not None else now
    except ValueError as exc:
        raise InvalidInput(f"start: {exc}") from None
    charges = preview_view(plan, list(itertools.islice(periods(plan, begin), count)))
    return PreviewList.model_validate({"data": charges, "has_more": False})


def router() -> APIRouter:
    routes = APIRouter(tags=["plans"])
    routes.add_api_route("/plans", list_plans, methods=["GET"], responses=errors())
    routes.add_api_route(
        "/plans/{plan_id}/preview", preview, methods=["GET"], responses=errors(404)
    )
    return routes
