"""One module per resource; each ``router()`` builds its routes (nothing at import time)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from billing.api.models import ErrorBody
from billing.db.tables import MAX_ID
from billing.services.listing import DEFAULT_LIMIT, MAX_LIMIT

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many (1-100).")]
After = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="The id of the last row of the previous page."),
]
LIMIT_DEFAULT = DEFAULT_LIMIT


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route: 401, 404 (a path that names nothing) and 422
    (every input) always, and ``statuses``."""
    described = {
        400: "Malformed request (a body that is no JSON)",
        401: "No live API key",
        403: "A read-only key writing",
        404: "Not found",
        409: "Conflict (the state does not allow it; an Idempotency-Key in use)",
        422: "Invalid values (the message names the field)",
        502: "PortOne refused, or could not be reached",
        503: "Not configured, or the database is unreachable",
    }
    return {
        code: {"model": ErrorBody, "description": described[code]}
        for code in sorted({401, 404, 422, *statuses})
    }
