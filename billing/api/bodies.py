"""What every request of the API must be before a route sees it.

- Its body is JSON: a body sent with another Content-Type (curl's ``-d`` sends
  ``application/x-www-form-urlencoded``) is read as JSON all the same, so that a body that is
  not JSON is a 400 whatever its label, and a JSON one is never refused for it.
- Its path and query carry no NUL character (PostgreSQL cannot store or compare one): 422.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from billing.api.errors import error_response

JSON = b"application/json"


class RequestGuard:
    """ASGI middleware: ``Content-Type: application/json`` on requests with a body, and a
    422 for a NUL character in the path or the query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"]):
            refusal = error_response(
                422, "invalid_request", "the path or query holds a NUL character"
            )
            await refusal(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", JSON)]}
        await self.app(scope, receive, send)
