"""Verifying webhooks on a few threads, with a deadline for the HTTP answer.

PortOne wants an answer fast. A webhook waits ``answer_within`` seconds for its verification
(one re-fetch, one short transaction); past that it is answered ``deferred`` while the
verification goes on in the background, bounded by the client's short timeout. When too many
are in flight, a new webhook is not verified at all: it is answered ``throttled`` (429, so
PortOne sends it again), and the scheduler's reconciliation settles its charge anyway.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from billing.logs import log
from billing.services.portone_webhook import PortoneWebhook, Verdict, WebhookHandler, WebhookResult

logger = logging.getLogger("billing.web")


class Verifier:
    def __init__(
        self, handler: WebhookHandler, *, workers: int, backlog: int, answer_within: float
    ) -> None:
        self.handler = handler
        self.answer_within = answer_within
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="webhook")
        self._slots = threading.BoundedSemaphore(backlog)

    async def verify(self, webhook: PortoneWebhook) -> WebhookResult:
        if not self._slots.acquire(blocking=False):
            return WebhookResult(Verdict.THROTTLED, "too many notices in verification")
        future = asyncio.wrap_future(self._pool.submit(self._run, webhook))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.answer_within)
        except TimeoutError:
            reason = "PortOne is slow: verification goes on; reconciliation settles it otherwise"
            return WebhookResult(Verdict.DEFERRED, reason)

    def warm_up(self) -> None:
        """Fetch PortOne's access token in the background, so a webhook needs one call."""
        self._pool.submit(self._warm_up)

    def close(self) -> None:
        """Let verifications in flight finish (each is bounded by the client's timeout)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, webhook: PortoneWebhook) -> WebhookResult:
        try:
            return self.handler.handle(webhook)
        except Exception as exc:  # answered 503: PortOne sends it again, reconciliation anyway
            logger.exception("notice not recorded", extra={"action": "portone_notice_error"})
            return WebhookResult(Verdict.ERROR, f"not recorded: {type(exc).__name__}")
        finally:
            self._slots.release()

    def _warm_up(self) -> None:
        token = getattr(self.handler.portone, "token", None)
        if token is None:
            return
        try:
            token()
        except Exception as exc:  # the first webhook asks again; nothing depends on this
            log(logger, "token_warmup", f"no PortOne token at start: {exc}")
