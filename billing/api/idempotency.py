"""Writes: the ``Idempotency-Key`` of every POST, and who acts.

A write handler returns ``write.run(produce, reason)``: ``produce`` calls the service and
gives back an ``Answer``; ``run`` claims the key first (a replay, a reuse or a key in
progress never reaches ``produce``), runs ``produce`` as ``api:<key name>`` with the reason
given (``history.acting_as``), turns the product's errors into their envelope, and records
the answer for the key. Validation errors never reach ``run``: they are not kept, as they
did nothing.

The fingerprint is the SHA-256 of the method, the path with its query, and the body (JSON
bodies in a canonical form, so that spacing and key order do not count). Card data never
enters it whole: a ``card`` object counts by the last four digits of its number only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from billing.api.auth import Context, Writer
from billing.api.context import ApiContext
from billing.api.errors import ApiError, billing_error_response
from billing.errors import BillingError
from billing.portone.keys import mask_number
from billing.services import idempotency as records
from billing.services.api_keys import Principal
from billing.services.history import acting_as

HEADER = "Idempotency-Key"
MAX_KEY = 255
REPLAYED = "Idempotent-Replayed"


@dataclass(frozen=True)
class Answer:
    status: int
    body: BaseModel


@dataclass(frozen=True)
class Write:
    context: ApiContext
    principal: Principal
    key: str | None
    fingerprint: str

    def run(self, produce: Callable[[], Answer], reason: str | None = None) -> Response:
        if self.key is None:
            return self._answer(produce, reason)
        record_id = self._claim(self.key)
        if isinstance(record_id, Response):
            return record_id
        try:
            response = self._answer(produce, reason)
        except BaseException:
            self._release(record_id)
            raise
        if response.status_code >= 500:
            self._release(record_id)
        else:
            self._complete(record_id, response)
        return response

    def _answer(self, produce: Callable[[], Answer], reason: str | None) -> JSONResponse:
        try:
            with acting_as(self.principal.actor, reason):
                answer = produce()
        except BillingError as exc:
            return billing_error_response(exc)
        return JSONResponse(answer.body.model_dump(mode="json"), status_code=answer.status)

    def _claim(self, key: str) -> int | Response:
        """The record to complete, or the first answer to this key."""
        with self.context.app.transaction() as session:
            outcome = records.claim(
                session,
                key,
                self.fingerprint,
                self.principal.key_id,
                self.context.app.clocks.system.now(),
            )
        if isinstance(outcome, records.Claimed):
            return outcome.record_id
        if isinstance(outcome, records.Replay):
            return Response(
                outcome.body,
                status_code=outcome.status,
                media_type="application/json",
                headers={REPLAYED: "true"},
            )
        raise _refusal(outcome)

    def _complete(self, record_id: int, response: Response) -> None:
        body = bytes(response.body).decode("utf-8")
        with self.context.app.transaction() as session:
            records.complete(session, record_id, response.status_code, body)

    def _release(self, record_id: int) -> None:
        with self.context.app.transaction() as session:
            records.release(session, record_id)


def _refusal(outcome: records.Claim) -> ApiError:
    if isinstance(outcome, records.Reused):
        return ApiError(
            409,
            "idempotency_key_reused",
            f"this {HEADER} was used for a different request (method, path or "
            "body) within 24 h: use a new key for a new request",
        )
    if isinstance(outcome, records.Interrupted):
        return ApiError(
            409,
            "idempotency_key_interrupted",
            f"the request first sent with this {HEADER} never recorded its "
            "answer: it may or may not have taken effect; look, then use a "
            "new key",
        )
    return ApiError(
        409,
        "idempotency_key_in_progress",
        f"a request with this {HEADER} is still running: retry it later",
    )


def fingerprint(method: str, target: str, body: bytes) -> str:
    digest = hashlib.sha256(f"{method}\n{target}\n".encode())
    digest.update(_canonical(body))
    return digest.hexdigest()


def _canonical(body: bytes) -> bytes:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if isinstance(document, dict) and isinstance(document.get("card"), dict):
        number = document["card"].get("number")
        shown = mask_number(number) if isinstance(number, str) else None
        document = {**document, "card": {"number": shown}}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


KEY_HEADER = Header(
    alias=HEADER,
    min_length=1,
    max_length=MAX_KEY,
    description="Makes a retry safe: the same key and body within 24 h get the first answer, "
    "without doing anything again.",
)


async def idempotent_write(
    request: Request,
    context: Context,
    principal: Writer,
    key: Annotated[str | None, KEY_HEADER] = None,
) -> Write:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Write(context, principal, key, fingerprint(request.method, target, await request.body()))


async def plain_write(context: Context, principal: Writer) -> Write:
    """A write that takes no Idempotency-Key (PUT and DELETE are idempotent already)."""
    return Write(context, principal, None, "")


PostWrite = Annotated[Write, Depends(idempotent_write)]
OtherWrite = Annotated[Write, Depends(plain_write)]
