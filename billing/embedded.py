"""Scheduler and worker in one process (``billing run``, ``billing demo``).

The broker is the configured one, or kombu's in-process memory transport; in sandbox mode
without BILLING_PORTONE_URL the bundled PortOne sandbox is started in this process too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from billing import tasks
from billing.app import App, build_app
from billing.bootstrap import worker_parts
from billing.broker import CeleryPublisher, celery_config
from billing.config import Settings
from billing.sandbox import SandboxConfig, SandboxServer
from billing.services.scheduling import Scheduler


@dataclass
class Embedded:
    settings: Settings
    concurrency: int = 8
    sandbox_config: SandboxConfig | None = None
    app: App = field(init=False)
    celery: Celery = field(init=False)
    scheduler: Scheduler = field(init=False)
    sandbox: SandboxServer | None = field(init=False, default=None)
    _worker: Any = field(init=False, default=None)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)

    def start(self, *, scheduler_interval: float | None = 1.0) -> None:
        """Start the sandbox (if needed) and the worker; the scheduler loop if an interval
        is given (the demo drives passes itself)."""
        url = self._start_sandbox()
        self.app = build_app(self.settings, pool_size=self.concurrency + 2)
        celery = Celery("billing-embedded", set_as_current=False)
        celery.conf.update(celery_config(self.settings))
        self.celery = celery
        publisher = CeleryPublisher(self.celery)
        parts = worker_parts(self.settings, publisher, self.concurrency, portone_url=url)
        tasks.register(celery, lambda _concurrency: parts)
        tasks.install(parts)
        plans = parts.pipeline.plans
        self.scheduler = Scheduler(self.app, publisher, plans)
        self._worker = self.celery.WorkController(
            pool_cls="threads",
            concurrency=self.concurrency,
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._spawn(self._worker.start)
        if scheduler_interval is not None:
            self._spawn(lambda: self.scheduler.run_forever(scheduler_interval, self._stop))

    def wait(self) -> None:
        """Block until stopped (Ctrl-C stops)."""
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
        for thread in self._threads:
            thread.join(timeout=20)
        tasks.reset()
        if self.sandbox is not None:
            self.sandbox.stop()

    def _start_sandbox(self) -> str | None:
        if not self.settings.sandbox_mode or self.settings.portone_url is not None:
            return None
        # in this process only, so no other process can register a key: it issues them itself
        config = self.sandbox_config or SandboxConfig(port=0, auto_register=True)
        self.sandbox = SandboxServer(config)
        self.sandbox.start()
        return self.sandbox.url

    def _spawn(self, target: Any) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)
