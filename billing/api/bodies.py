"""Every request body of the API is JSON: a body sent with another Content-Type (curl's
``-d`` sends ``application/x-www-form-urlencoded``) is read as JSON all the same, so that a
body that is not JSON is a 400 whatever its label, and a JSON one is never refused for it."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

JSON = b"application/json"


class JsonBodies:
    """ASGI middleware: sets ``Content-Type: application/json`` on requests with a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", JSON)]}
        await self.app(scope, receive, send)
