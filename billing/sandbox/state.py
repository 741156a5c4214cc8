"""Everything one sandbox remembers, and the controls a test or the admin API turns.

``SandboxState`` is HTTP-free: the endpoints read and change it, ``SandboxServer`` puts a
socket in front of it, and unit tests drive it directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date

from billing.sandbox import fields
from billing.sandbox.behaviors import FaultPlan, Script, parse_behavior, parse_behaviors
from billing.sandbox.config import SandboxConfig
from billing.sandbox.customers import BillingKeys
from billing.sandbox.ledger import Ledger
from billing.sandbox.protocol import JSONObject, customer_json, payment_json
from billing.sandbox.schedules import ScheduleBook
from billing.sandbox.stats import Stats
from billing.sandbox.tokens import TokenStore
from billing.sandbox.webhooks import WebhookSender


class SandboxState:
    """Owns the ledger, billing keys, hosted schedules, tokens, script, latency, counters, the
    sandbox clock and the webhook sender.

    ``now()`` is the sandbox's clock: ``clock()`` (real time) until the clock control sets it,
    then ``frozen``, which stands still until moved on again (as the product's test clock does;
    ``reset`` returns to real time). Tokens live on real time, so moving the clock a month on
    does not expire them.
    """

    def __init__(
        self,
        config: SandboxConfig,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.ledger = Ledger(config.seed)
        self.keys = BillingKeys(config.auto_register)
        self.schedules = ScheduleBook()
        self.frozen: int | None = None  # the clock control's time, once set
        self.tokens = TokenStore(config.token_ttl, clock)
        self.behaviors = Script(config.seed)
        self.counters = Stats()
        self.webhooks = WebhookSender(
            retries=config.notice_retries, retry_seconds=config.notice_retry_seconds
        )
        self.latency_ms = config.latency_ms
        self.closing = threading.Event()  # set on stop: releases held connections

    def now(self) -> int:
        return int(self.clock()) if self.frozen is None else self.frozen

    def today(self) -> date:
        return date.fromtimestamp(self.clock() if self.frozen is None else self.frozen)

    # -- controls ---------------------------------------------------------------------------

    def script(self, customer_uid: str | None, behaviors: Iterable[str]) -> None:
        """Queue behaviors for ``customer_uid`` (None: the global queue); all or nothing."""
        self.behaviors.queue(customer_uid, parse_behaviors(behaviors))

    def set_default(self, customer_uid: str | None, behavior: str) -> None:
        self.behaviors.set_default(customer_uid, parse_behavior(behavior))

    def set_faults(self, faults: Mapping[str, object], seed: int | None = None) -> None:
        self.behaviors.set_faults(FaultPlan.parse(faults), seed)

    def set_latency(self, ms: int) -> None:
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError("latency must be a whole number of milliseconds, 0 or more")
        self.latency_ms = ms

    def move_clock(self, now: int | None = None, advance: int | None = None) -> int:
        """Set the sandbox clock to ``now`` or move it ``advance`` seconds on, where it stays;
        answers the new now. It never goes back (``reset`` returns it to real time)."""
        if (now is None) == (advance is None):
            raise ValueError("give either now (unix seconds) or advance (seconds)")
        target = self.now() + advance if advance is not None else now
        assert target is not None
        if target < self.now():
            raise ValueError("the sandbox clock only moves forward (reset returns to real time)")
        self.frozen = target
        return target

    def expire_tokens(self) -> int:
        return self.tokens.expire_all()

    def reset(self) -> None:
        """Back to a fresh sandbox (same configuration)."""
        self.ledger.clear()
        self.keys.clear()
        self.schedules.clear()
        self.frozen = None
        self.behaviors.clear()
        self.tokens.expire_all()
        self.counters.clear()
        self.latency_ms = self.config.latency_ms

    def ledger_json(self) -> list[JSONObject]:
        return [payment_json(payment) for payment in self.ledger.all()]

    def stats(self) -> dict[str, dict[str, int]]:
        return {**self.counters.snapshot(), "payments": self.ledger.counts()}

    def register_customer(
        self, customer_uid: str, card_number: str = "4111111111111111", **details: str
    ) -> JSONObject:
        """Issue a billing key as ``POST /subscribe/customers/{customer_uid}`` does.

        ``details``: expiry (default: a far future month), birth, pwd_2digit, customer_*.
        Raises CardRefused or InvalidRequest where the endpoint would refuse.
        """
        uid = fields.customer_uid(customer_uid)
        given = {"card_number": card_number, "expiry": "2099-12", **details}
        card, contact = fields.registration(given, self.today())
        return customer_json(self.keys.register(uid, card, contact, self.now()))
