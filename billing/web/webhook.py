"""``POST /portone/webhook``: PortOne's notice_url.

The HTTP side only: the source allowlist (off unless configured), the body (JSON or form,
at most ``max_body`` bytes), and the answer. What a webhook means is decided by
``billing.services.portone_webhook`` after re-fetching the payment from PortOne.

Answers: 200 with ``{"result": verdict}`` for every webhook we could judge, whatever the
verdict (PortOne stops sending it; a forged one learns nothing); 400 for a body that is no
webhook; 403 for a source outside the allowlist; 413 for a body too large; 429 past the
per-source rate or the process's ceiling on re-fetches (``billing.services.webhook_guard``);
503 when there is no PortOne to ask or the database could not record the result (PortOne
sends it again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.errors import InvalidInput
from billing.services.portone_webhook import Verdict, parse_webhook
from billing.web.context import WebContext

PATH = "/portone/webhook"
MAX_FIELDS = 20
_FORM = "application/x-www-form-urlencoded"


STATUS = {Verdict.ERROR: 503, Verdict.THROTTLED: 429}  # every other verdict: 200


class BodyTooLarge(Exception):
    pass


def routes(context: WebContext) -> list[Route]:
    async def portone_webhook(request: Request) -> JSONResponse:
        host = request.client.host if request.client else None
        if not context.config.allows(host):
            return _answer(context, "refused", 403, error=f"source {host} is not allowed")
        if context.verifier is None:
            return _answer(context, "unavailable", 503, error=context.portone_error)
        if not context.sources.take(host or ""):
            return _answer(context, "throttled", 429, error="too many notices from this source")
        try:
            body = await read_body(request, context.config.max_body)
            webhook = parse_webhook(webhook_fields(body, request.headers.get("content-type", "")))
        except BodyTooLarge:
            return _answer(context, "invalid", 413, error="body too large")
        except InvalidInput as exc:
            return _answer(context, "invalid", 400, error=exc.message)
        result = await context.verifier.verify(webhook)
        status = STATUS.get(result.verdict, 200)
        return _answer(context, str(result.verdict), status, reason=result.reason)

    return [Route(PATH, portone_webhook, methods=["POST"])]


def _answer(context: WebContext, verdict: str, status: int, **details: Any) -> JSONResponse:
    context.webhook_counter.labels(verdict).inc()
    body = {"result": verdict, **{k: v for k, v in details.items() if v}}
    return JSONResponse(body, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_fields(body: bytes, content_type: str) -> Mapping[str, Any]:
    """A JSON object, or ``application/x-www-form-urlencoded`` fields (the last of a
    repeated name wins). Any other content type is read as whichever of the two it is."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.startswith("multipart/"):
        raise InvalidInput("send the notice as JSON or application/x-www-form-urlencoded")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8") from None
    if kind == "application/json" or (kind != _FORM and text.lstrip().startswith("{")):
        return _json_object(text)
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except ValueError:
        raise InvalidInput(f"more than {MAX_FIELDS} form fields") from None


def _json_object(text: str) -> Mapping[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object")
    return document
